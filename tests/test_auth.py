"""Basic authentication: hashes, the verification cache and single-flight checks."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest

from swdepot.auth import (
    ADMIN,
    Authenticator,
    hash_password,
    hash_password_soon,
    verify_password,
)
from swdepot.errors import Unauthorized
from swdepot.loginlimit import LoginLimiter, TooManyFailures
from swdepot.persistence.sqlite import Database, SqliteFailureLog, SqliteUserStore


class CountingStore:
    """The real SQLite user store, counting look-ups (each one precedes a slow hash)."""

    def __init__(self, inner: SqliteUserStore) -> None:
        self.inner = inner
        self.lookups = 0
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[str, str] | None:
        with self._lock:
            self.lookups += 1
        return self.inner.get(name)

    def put(self, name: str, password_hash: str, role: str) -> None:
        self.inner.put(name, password_hash, role)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    store = CountingStore(SqliteUserStore(Database(tmp_path / "users.db")))
    store.put("admin", hash_password("right"), ADMIN)
    return store


def test_hash_is_salted_and_verifies() -> None:
    # "p-w!": '-' and '!' are not in base64's alphabet, so a random salt or digest can
    # never spell it out by chance (plain "pw" did, once in about 70 hashes)
    first, second = hash_password("p-w!"), hash_password("p-w!")
    assert first != second and "p-w!" not in first
    assert verify_password("p-w!", first) and not verify_password("p-w!2", first)
    assert not verify_password("pw", "garbage") and not verify_password("pw", "a$b$c$d")


def test_a_hash_begun_early_is_an_ordinary_hash_and_reports_its_failure() -> None:
    """serve starts the admin password's hash before its imports (cli.py)."""
    pending = hash_password_soon("early pw")
    assert pending.password == "early pw"
    encoded = pending.result()
    assert verify_password("early pw", encoded)
    assert not verify_password("other", encoded)
    with pytest.raises(AttributeError):  # not a str: raised by the thread, handed over
        hash_password_soon(None).result()  # type: ignore[arg-type]


def test_concurrent_logins_run_one_slow_hash(store: CountingStore) -> None:
    auth = Authenticator(store)
    barrier = threading.Barrier(20)
    names: list[str] = []

    def login() -> None:
        barrier.wait()
        names.append(auth.authenticate(header("admin", "right")).name)

    threads = [threading.Thread(target=login) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert names == ["admin"] * 20
    assert store.lookups == 1  # one verification served all twenty
    auth.authenticate(header("admin", "right"))
    assert store.lookups == 1  # and later requests hit the cache


def test_concurrent_wrong_passwords_all_fail(store: CountingStore) -> None:
    auth = Authenticator(store)
    barrier = threading.Barrier(10)
    failures: list[bool] = []

    def login() -> None:
        barrier.wait()
        try:
            auth.authenticate(header("admin", "wrong"))
        except Unauthorized:
            failures.append(True)

    threads = [threading.Thread(target=login) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [True] * 10
    with pytest.raises(Unauthorized):  # a failure is never cached as success
        auth.authenticate(header("admin", "wrong"))
    assert auth.authenticate(header("admin", "right")).name == "admin"


def test_malformed_headers_are_401(store: CountingStore) -> None:
    auth = Authenticator(store)
    for value in (None, "", "Bearer x", "Basic", "Basic !!!", "Basic " +
                  base64.b64encode(b"no-colon").decode()):
        with pytest.raises(Unauthorized):
            auth.authenticate(value)
    assert store.lookups == 0


def test_cached_answers_only_for_recently_verified_credentials(store: CountingStore) -> None:
    auth = Authenticator(store)
    right, wrong = header("admin", "right"), header("admin", "wrong")
    assert auth.cached(right) is None  # never verified: the caller must take the slow path
    assert auth.authenticate(right).name == "admin"
    lookups = store.lookups
    assert auth.cached(right) is not None and auth.cached(right).name == "admin"
    assert auth.cached(wrong) is None and auth.cached("Basic !!!") is None
    assert store.lookups == lookups  # the fast path never touches the store
    auth.forget()
    assert auth.cached(right) is None


def test_a_locked_out_address_cannot_guess_through_the_cache(store: CountingStore) -> None:
    from swdepot.loginlimit import LoginLimiter, TooManyFailures

    auth = Authenticator(store, limiter=LoginLimiter(max_failures=2, window=60))
    auth.prime("admin", "right", ADMIN)  # as the service does with its admin password
    assert auth.cached(header("admin", "right"), "10.0.0.9") is not None
    for _ in range(2):
        with pytest.raises(Unauthorized):
            auth.authenticate(header("admin", "guess"), "10.0.0.9")
    with pytest.raises(TooManyFailures):  # the right password is no oracle while locked out
        auth.cached(header("admin", "right"), "10.0.0.9")
    assert auth.cached(header("admin", "right"), "10.0.0.10") is not None  # others unaffected


@pytest.fixture(params=["sqlite", "postgresql"])
def failure_log_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """Open the shared failure log as a separate process would (own connection)."""
    opened: list[Any] = []

    def open_log() -> Any:
        if request.param == "sqlite":
            db = Database(tmp_path / "swdepot.db")
            opened.append(db)
            return SqliteFailureLog(db)
        from swdepot.persistence.postgres import PgDatabase, PgFailureLog

        pg = PgDatabase(request.getfixturevalue("pg_url"), max_size=2)
        opened.append(pg)
        return PgFailureLog(pg)

    yield open_log
    for db in opened:
        db.close()


def test_failed_logins_on_every_node_count_towards_one_lockout(failure_log_factory) -> None:
    """Guesses spread over two nodes (a load balancer) are limited as if sent to one; a
    login that succeeds clears the address on every node."""
    now = [1000.0]
    nodes = [LoginLimiter(max_failures=4, window=60, clock=lambda: now[0],
                          shared=failure_log_factory(), wall_clock=lambda: now[0])
             for _ in range(2)]
    for n in range(3):
        nodes[n % 2].check_shared("10.0.0.9")
        nodes[n % 2].failed("10.0.0.9")
        now[0] += 1
    nodes[1].check_shared("10.0.0.9")  # three, anywhere: still allowed
    nodes[1].failed("10.0.0.9")
    for node in nodes:
        with pytest.raises(TooManyFailures) as refused:
            node.check_shared("10.0.0.9")
        assert refused.value.retry_after == 57  # the oldest failure leaves the window then
    with pytest.raises(TooManyFailures):
        nodes[1].check("10.0.0.9")  # learnt from the log: the fast check refuses too
    nodes[0].check_shared("10.0.0.8")  # another address is not affected
    now[0] += 58
    nodes[0].check_shared("10.0.0.9")  # the oldest left the window
    nodes[0].succeeded("10.0.0.9")
    for node in nodes:
        node.check_shared("10.0.0.9")
    assert failure_log_factory().since("10.0.0.9", 0) == []
