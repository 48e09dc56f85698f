"""swdepot: an ONTAP-compatible software and firmware package download service."""

__version__ = "0.1.0"
