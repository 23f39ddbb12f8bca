"""The store appliance: cameras with motion alerts, and the guest Wi-Fi captive portal."""

__version__ = "0.1.0"
