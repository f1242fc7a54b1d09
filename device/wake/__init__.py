"""Wake word: openWakeWord detection with per-model thresholds, and model provisioning.

Importing this package stays cheap: openWakeWord (which pulls in scipy and scikit-learn) is
imported only when a detector loads its models.
"""
