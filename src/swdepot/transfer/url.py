"""What a download URL may be, checked before any job exists.

ONTAP validates the URL synchronously: bad syntax is 39387137, a scheme other than
HTTP(S)/FTP/FILE is 39387138. Credentials written into the URL
(``ftp://user:pw@host/x``) are taken out here, so that everything downstream only
ever sees the redacted form.

Any URL a person can type is made the URL a browser or curl would send: a host with
non-ASCII characters goes through IDNA (UTS 46 mapping, so ``bücher.example`` becomes
``xn--bcher-kva.example``, and 127.0.0.1 typed in fullwidth digits is 127.0.0.1), and the
path and query have every character outside RFC 3986's set percent-encoded as UTF-8
(what is already percent-encoded stays). A host IDNA rejects is 39387137, with the
reason, before any job exists: no lookup is ever made of it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

import idna

from swdepot.errors import URL_INVALID, URL_SCHEME_UNSUPPORTED, InvalidInput

SCHEMES = ("http", "https", "ftp", "file")
MAX_URL_LENGTH = 4096
# RFC 3986's unreserved and sub-delimiter characters, ":" and "@", and "%" (an escape
# already made): what may stand in a path as it is; everything else is percent-encoded
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


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
    host = _ascii_host(raw, parts.hostname or "")
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
    clean = urlunsplit(SplitResult(scheme, _netloc(host, port),
                                   quote(parts.path, safe=_PATH_SAFE),
                                   quote(parts.query, safe=_QUERY_SAFE), ""))
    return DownloadUrl(scheme, host, port, path, clean, file_name), credentials


def _ascii_host(raw: str, host: str) -> str:
    """The host as it goes on the wire: IDNA for one with non-ASCII characters."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise _invalid(raw, f"the host name is not a valid internationalized domain "
                       f"name ({exc})") from None


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
