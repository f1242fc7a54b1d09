"""Running as a system service: sd_notify and watchdog, journald logging, metrics, control socket.

Submodules are imported directly (`from device.service.notify import Notifier`) so that importing
one never drags in the libraries of another.
"""
