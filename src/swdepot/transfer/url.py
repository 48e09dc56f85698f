"""What a download URL may be, checked before any job exists.

ONTAP validates the URL synchronously: bad syntax is 39387137, a scheme other than
HTTP(S)/FTP/FILE is 39387138. Credentials written into the URL
(``ftp://user:pw@host/x``) are taken out here, so that everything downstream only
ever sees the redacted form.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from swdepot.errors import URL_INVALID, URL_SCHEME_UNSUPPORTED, InvalidInput

SCHEMES = ("http", "https", "ftp", "file")
MAX_URL_LENGTH = 4096


@dataclass(frozen=True)
class Credentials:
    """A user name and password for the package server; never logged or stored."""

    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # keep the password out of tracebacks and logs
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class DownloadUrl:
    """A validated download URL with any user information removed."""

    scheme: str
    host: str
    port: int | None
    path: str  # percent-decoded
    url: str  # the URL to fetch, without user information
    file_name: str  # basename the package will be stored under

    def __str__(self) -> str:
        return self.url


def _invalid(url: str, reason: str) -> InvalidInput:
    return InvalidInput(
        URL_INVALID,
        f'Invalid URL syntax was provided. Retry with a valid URL. ("{redact(url)}": {reason})',
        target="url",
    )


def parse_download_url(raw: str) -> tuple[DownloadUrl, Credentials]:
    """Validate ``raw`` and split off credentials embedded in it."""
    if not raw or len(raw) > MAX_URL_LENGTH:
        raise _invalid(raw[:200], "the URL is empty or too long")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _invalid(raw, "the URL contains white space or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise _invalid(raw, str(exc)) from None
    scheme = parts.scheme.lower()
    if not scheme or "://" not in raw:
        raise _invalid(raw, "the URL has no scheme")
    if scheme not in SCHEMES:
        raise InvalidInput(
            URL_SCHEME_UNSUPPORTED,
            # ONTAP's own text, verbatim (it omits HTTP:// although HTTP is accepted).
            "Unsupported URL scheme provided. Retry with one of FILE://, FTP://, or HTTPS://.",
            target="url",
        )
    host = parts.hostname or ""
    if scheme != "file" and not host:
        raise _invalid(raw, "the URL has no host")
    path = unquote(parts.path)
    if "\x00" in path:
        raise _invalid(raw, "the path contains a NUL character")
    file_name = posixpath.basename(path)
    if not file_name or file_name in (".", ".."):
        raise _invalid(raw, "the URL does not name a file")
    credentials = Credentials(
        unquote(parts.username) if parts.username is not None else None,
        unquote(parts.password) if parts.password is not None else None,
    )
    clean = urlunsplit(SplitResult(scheme, _netloc(host, port), parts.path, parts.query, ""))
    return DownloadUrl(scheme, host, port, path, clean, file_name), credentials


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        netloc = f"{user}:***@{_netloc(parts.hostname or '', parts.port)}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        at = url.rfind("@")
        return ("***" + url[at:]) if at != -1 else url
