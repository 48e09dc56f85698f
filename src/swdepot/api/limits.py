"""What one HTTP request may take; enforced by :mod:`swdepot.api.protocol`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestLimits:
    """Settings ``max_request_head_bytes``, ``request_head_timeout`` and
    ``request_body_timeout`` (docs/operations.md, "Bounded requests")."""

    max_head_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    body_idle_timeout: float = 60.0


DEFAULT_LIMITS = RequestLimits()
