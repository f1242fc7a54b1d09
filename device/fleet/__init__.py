"""The fleet view: Prometheus scrape targets, rules and a Grafana dashboard for every device
in the Ansible inventory (`warehouse-voice fleet generate`)."""
