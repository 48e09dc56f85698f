"""HTTP Basic authentication against slow password hashes.

Passwords are stored as PBKDF2-HMAC-SHA256 hashes with 600,000 iterations (OWASP's
figure; about 0.25 s of CPU per check). scrypt was the first choice, but its 16 MiB working
set stayed resident after the first login and cost a fifth of the service's memory budget.
Clients send Basic credentials on *every* request, so a verified
credential is remembered as a keyed digest for a while: polling stays fast, and a
stolen memory dump still holds no password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from swdepot.errors import NOT_AUTHORIZED, Forbidden, Unauthorized
from swdepot.loginlimit import LoginLimiter

ADMIN = "admin"
READONLY = "readonly"
ITERATIONS = 600_000
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 1024


def hash_password(password: str) -> str:
    """``pbkdf2_sha256$iterations$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    return "$".join(("pbkdf2_sha256", str(ITERATIONS), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


@dataclass(frozen=True)
class PendingHash:
    """A password and its :func:`hash_password`, being computed on a thread."""

    password: str
    hashed: Future[str]
    thread: threading.Thread | None = None

    def result(self) -> str:
        """The hash, once its thread has ended (the service forks after this)."""
        value = self.hashed.result()
        if self.thread is not None:
            self.thread.join()
        return value


def hash_password_soon(password: str) -> PendingHash:
    """:func:`hash_password` on a thread of its own, for a start-up that has other work.

    The hash releases the GIL, so it runs on the other core while the service imports
    and opens its store: a quarter to half a second off every start that is given its
    admin password (CI sets one and starts a service per run).
    """
    hashed: Future[str] = Future()

    def work() -> None:
        try:
            hashed.set_result(hash_password(password))
        except BaseException as exc:  # handed to whoever waits for the hash
            hashed.set_exception(exc)

    thread = threading.Thread(target=work, name="swdepot-admin-hash", daemon=True)
    thread.start()
    return PendingHash(password, hashed, thread)


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                     int(iterations), dklen=len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


class UserStore(Protocol):
    def get(self, name: str) -> tuple[str, str] | None:
        """(password hash, role) of a user, or None."""

    def put(self, name: str, password_hash: str, role: str) -> None: ...

    def all(self) -> list[tuple[str, str]]:
        """(name, role) of every user, by name; hashes stay in the store."""

    def delete(self, name: str) -> bool:
        """Remove a user; False if there was none."""

    def fingerprint(self) -> str:
        """A digest of every user's name, hash and role: it changes with any change to
        them, made by any process (a few rows: cheap enough to ask twice a second)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    name: str
    role: str

    def require_write(self) -> None:
        if self.role != ADMIN:
            raise Forbidden(NOT_AUTHORIZED, "not authorized for that command")


class Authenticator:
    """Checks Basic credentials, with a short-lived cache of verified ones.

    Checks of the same credentials are single-flight: when 50 clients open connections at
    once, one slow hash runs and the other 49 wait for its verdict instead of each paying
    a quarter of a second of CPU.
    """

    def __init__(self, users: UserStore, clock: Callable[[], float] | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        self._users = users
        self._limiter = limiter or LoginLimiter(max_failures=0)
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._fingerprint: str | None = None  # of the users, when sync() last looked
        self._pending: dict[bytes, Future[Principal | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock or time.monotonic

    def cached(self, header: str | None, client: str | None = None) -> Principal | None:
        """The caller if these exact credentials were verified recently, else None.

        Cheap (an HMAC and a dict look-up), so the event loop may call it directly. An
        address that is locked out is refused here too: otherwise its guesses would go on
        at full speed, a right one answering 200 from the cache.
        """
        self._limiter.check(client)
        try:
            name, password = _parse_basic(header)
        except Unauthorized:
            return None
        token = self._token(name, password)
        with self._lock:
            hit = self._cache.get(token)
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    def _token(self, name: str, password: str) -> bytes:
        """The cache's key for these credentials: a MAC under a key of this process only,
        so the cache never holds a password, or anything a guess could be checked against
        without the key.

        Keyed BLAKE2b is a MAC of its own, in one C call; every poll checks one (why not
        HMAC: docs/performance.md).
        """
        return hashlib.blake2b(f"{name}\0{password}".encode(), key=self._key,
                               digest_size=32).digest()

    def authenticate(self, header: str | None, client: str | None = None) -> Principal:
        """The caller behind an ``Authorization`` header, or :class:`Unauthorized`.

        ``client`` (the peer address) is what failed logins are counted against.
        """
        name, password = _parse_basic(header)
        token = self._token(name, password)
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
            pending = self._pending.get(token)
            leader = pending is None
            if pending is None:
                pending = self._pending[token] = Future()
        if leader:
            principal = self._lead(token, pending, name, password, client)
        else:
            principal = pending.result()
            if principal is None:
                self._limiter.failed(client)
        if principal is None:
            raise _unauthorized()
        return principal

    def _lead(self, token: bytes, pending: Future[Principal | None], name: str, password: str,
              client: str | None) -> Principal | None:
        """Run the one slow check for these credentials and share its verdict."""
        try:
            self._limiter.check_shared(client)
            principal = self._verify(name, password)
            if principal is None:
                self._limiter.failed(client)
            else:
                self._limiter.succeeded(client)
            pending.set_result(principal)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(token, None)
                known = (pending.result() if pending.done() and pending.exception() is None
                         else None)
                if known is not None:
                    self._remember(token, known)
        return principal

    def _verify(self, name: str, password: str) -> Principal | None:
        found = self._users.get(name)
        if found is None or not verify_password(password, found[0]):
            return None
        return Principal(name, found[1])

    def _remember(self, token: bytes, principal: Principal) -> None:
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[token] = (self._clock() + CACHE_SECONDS, principal)

    def prime(self, name: str, password: str, role: str) -> None:
        """Remember credentials the service itself just set (their hash is being stored)."""
        with self._lock:
            self._remember(self._token(name, password), Principal(name, role))

    def forget(self) -> None:
        """Drop cached verifications (after a password change)."""
        with self._lock:
            self._cache.clear()

    def sync(self) -> bool:
        """Drop cached verifications if the users changed since the last call, whichever
        process changed them (another node, ``swdepot user add``); True if they did.

        The service calls this every ``credentials_check_seconds``: that is how long an
        old password may still be taken from the cache after a change anywhere."""
        seen = self._users.fingerprint()
        with self._lock:
            changed = self._fingerprint is not None and seen != self._fingerprint
            self._fingerprint = seen
            if changed:
                self._cache.clear()
        return changed


def _parse_basic(header: str | None) -> tuple[str, str]:
    # NetApp's own REST example sends "Basic <b64> " with a trailing space: strip it.
    if not header:
        raise _unauthorized()
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        raise _unauthorized()
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized() from None
    name, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized()
    return name, password


def _unauthorized() -> Unauthorized:
    return Unauthorized(NOT_AUTHORIZED, "Authentication failed: a valid user name and password "
                        "are required.")
