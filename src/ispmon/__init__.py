"""ispmon: service availability and network monitoring for internet service providers."""

__version__ = "0.1.0"
