"""What a running transfer may ask of its caller, and the outbound allow-list rule."""

from __future__ import annotations

import ipaddress
from typing import Protocol

from swdepot.errors import DOWNLOAD_FAILED, OntapError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Control(Protocol):
    """Implemented by the job layer; keeps the transfer code free of jobs."""

    @property
    def cancelled(self) -> bool: ...

    def progress(self, done: int, total: int | None) -> None: ...


class Cancelled(OntapError):
    """The transfer was stopped on request."""

    def __init__(self) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the download was canceled.")


def address_allowed(ip: Address, allowed: tuple[Network, ...]) -> bool:
    """An empty allow-list allows everything; otherwise the address must be inside one.

    IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
    """
    if not allowed:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in allowed if net.version == ip.version)


def failed(detail: str) -> OntapError:
    """A transfer failure as ONTAP reports it: code 10551381 and what went wrong."""
    return OntapError(DOWNLOAD_FAILED, f"Package download failed: {detail}.")
