"""Shared pytest configuration for swdepot tests.

The local HTTP/HTTPS/FTP test servers and their fixtures live in ``tests/servers.py``.
"""

pytest_plugins = ["servers", "service", "browser", "clients", "postgres", "seaweed"]
