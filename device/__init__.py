"""warehouse-voice: a hands-free voice appliance for warehouses."""

__version__ = "0.1.0"
