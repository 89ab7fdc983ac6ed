"""sitewatch: watch places on Earth through satellite images."""

__version__ = "0.1.0"
