"""Both blob stores keep the same contract: the local directory and S3 (SeaweedFS).

Every test here runs on ``LocalDirStore`` and on ``S3Store`` against a real SeaweedFS
server (tests/seaweed.py). "Another process" is another store object on the same
directory or bucket, with no state shared in memory: everything an upload is, the store
itself must say.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seaweed import SeaweedStore, s3_environment
from swdepot.repository.s3 import PART_SIZE, BadStoreUrl, S3Location, S3Store
from swdepot.repository.store import BlobStore, LocalDirStore

MiB = 1 << 20
Opener = Callable[[str], BlobStore]  # owner → a store object on the shared location


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_environment().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["local", "s3"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "local":
        yield lambda owner: LocalDirStore(tmp_path / "store", "node-a", owner)
        return
    seaweed: SeaweedStore = request.getfixturevalue("seaweed")
    location = S3Location.parse(seaweed.url(seaweed.create_bucket(), "pkgs"))
    yield lambda owner: S3Store(location, "node-a", owner)


def _write(upload: object, data: bytes, piece: int = 1 << 20) -> None:
    for at in range(0, len(data), piece):
        upload.write(memoryview(data)[at:at + piece])  # type: ignore[attr-defined]


def _read(store: BlobStore, key: str) -> bytes:
    with store.open(key) as fh:
        return fh.read()


def test_a_committed_blob_reads_back_whole(opener: Opener) -> None:
    store = opener("node-a")
    data = os.urandom(2 * PART_SIZE + 12345)
    upload = store.begin()
    _write(upload, data, piece=700_001)
    assert upload.size == len(data)
    assert "packages/x/a.tgz" not in set(store.keys())
    upload.commit("packages/x/a.tgz")
    other = opener("node-b")
    assert _read(other, "packages/x/a.tgz") == data
    assert other.sha256("packages/x/a.tgz") == hashlib.sha256(data).hexdigest()
    assert other.exists("packages/x/a.tgz") and not other.exists("packages/x/b.tgz")
    assert set(other.keys()) == {"packages/x/a.tgz"}
    assert abs(other.changed("packages/x/a.tgz") - time.time()) < 120
    other.delete("packages/x/a.tgz")
    other.delete("packages/x/a.tgz")  # a retried delete is no error
    assert set(other.keys()) == set() and not other.exists("packages/x/a.tgz")


def test_an_empty_blob_and_a_small_one(opener: Opener) -> None:
    store = opener("node-a")
    store.begin().commit("packages/e/empty")
    upload = store.begin()
    upload.write(b"tiny")
    upload.commit("packages/s/small")
    assert _read(store, "packages/e/empty") == b""
    assert _read(store, "packages/s/small") == b"tiny"


def test_aborted_uploads_leave_nothing(opener: Opener) -> None:
    store = opener("node-a")
    upload = store.begin()
    _write(upload, os.urandom(PART_SIZE + 5))
    upload.abort()
    upload.abort()
    assert set(store.keys()) == set()
    with pytest.raises(ValueError):
        store.staged_size(upload.handle)
    assert store.clean_staging(keep=(), abandoned_before=time.time() + 60,
                               own_leftovers=True) == 0


def test_another_process_adopts_and_commits_a_flushed_upload(opener: Opener) -> None:
    data = os.urandom(PART_SIZE + 3 * MiB)
    writer = opener("node-a")
    upload = writer.begin()
    _write(upload, data)
    upload.flush()
    upload.detach()
    service = opener("node-a")
    assert service.staged_size(upload.handle) == len(data)
    adopted = service.adopt(upload.handle)
    assert adopted.size == len(data)
    adopted.commit("packages/y/b.tgz")
    assert _read(opener("x"), "packages/y/b.tgz") == data
    with pytest.raises(ValueError):
        service.adopt("../../etc/passwd")


def test_a_taker_over_continues_from_what_the_dead_writer_staged(opener: Opener) -> None:
    """The dead node's finished bytes are kept, read back for the hash, and written on."""
    data = os.urandom(3 * PART_SIZE + 777)
    first = opener("node-a").begin()
    _write(first, data[:2 * PART_SIZE + MiB])  # two whole parts and a tail never sent
    first.keep()  # the writer dies: what it sent stays
    taker = opener("node-b")
    staged = taker.staged_size(first.handle)
    assert 2 * PART_SIZE <= staged <= 2 * PART_SIZE + MiB
    cut = 2 * PART_SIZE
    resumed = taker.resume(first.handle, cut)
    assert resumed.size == cut
    assert b"".join(resumed.read_staged(cut)) == data[:cut]
    _write(resumed, data[cut:])
    resumed.flush()
    resumed.commit("packages/z/c.tgz")
    assert _read(taker, "packages/z/c.tgz") == data
    assert taker.sha256("packages/z/c.tgz") == hashlib.sha256(data).hexdigest()
    # nothing staged is left behind once committed
    assert taker.clean_staging(keep=(), abandoned_before=time.time() + 60,
                               own_leftovers=True) == 0


def test_a_second_takeover_continues_the_first_ones_bytes(opener: Opener) -> None:
    data = os.urandom(4 * PART_SIZE)
    first = opener("node-a").begin()
    _write(first, data[:PART_SIZE])
    first.keep()
    second = opener("node-b").resume(first.handle, PART_SIZE)
    _write(second, data[PART_SIZE:3 * PART_SIZE])
    second.keep()
    third = opener("node-c")
    assert third.staged_size(first.handle) == 3 * PART_SIZE
    resumed = third.resume(first.handle, 3 * PART_SIZE)
    assert b"".join(resumed.read_staged(3 * PART_SIZE)) == data[:3 * PART_SIZE]
    _write(resumed, data[3 * PART_SIZE:])
    resumed.commit("packages/w/d.tgz")
    assert _read(third, "packages/w/d.tgz") == data


def test_clean_staging_spares_live_work_and_kept_handles(opener: Opener) -> None:
    mine, kept, theirs = opener("node-a"), opener("node-a"), opener("node-b")
    leftover = mine.begin()
    _write(leftover, os.urandom(PART_SIZE))
    leftover.keep()
    named = kept.begin()
    _write(named, os.urandom(PART_SIZE))
    named.keep()
    live = theirs.begin()
    _write(live, os.urandom(PART_SIZE))
    live.keep()
    # at start-up: this owner's leftovers go, except what a checkpoint names; another
    # owner's recent work stays
    removed = mine.clean_staging(keep={named.handle}, abandoned_before=time.time() - 3600,
                                 own_leftovers=True)
    assert removed >= 1
    with pytest.raises(ValueError):
        mine.staged_size(leftover.handle)
    assert mine.staged_size(named.handle) == PART_SIZE
    assert mine.staged_size(live.handle) == PART_SIZE
    # once abandoned long enough, another owner's staging goes too
    mine.clean_staging(keep=(), abandoned_before=time.time() + 60, own_leftovers=False)
    with pytest.raises(ValueError):
        mine.staged_size(live.handle)


def test_invalid_keys_are_refused(opener: Opener) -> None:
    store = opener("node-a")
    for key in ("../outside", ".staging/x", ".blobs/x"):
        with pytest.raises((ValueError, FileNotFoundError)):
            store.open(key)


# -- S3 only ------------------------------------------------------------------------------


def _s3(seaweed: SeaweedStore, owner: str = "node-a") -> S3Store:
    return S3Store(S3Location.parse(seaweed.url(seaweed.create_bucket())), "node-a", owner)


def test_store_urls() -> None:
    where = S3Location.parse("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000")
    assert (where.bucket, where.prefix, where.endpoint) == ("bucket", "some/prefix",
                                                             "http://127.0.0.1:9000")
    assert where.object("packages/a") == "some/prefix/packages/a"
    for bad in ("s3://", "http://bucket", "s3://key:secret@bucket",
                "s3://b?endpoint=ftp://x", "s3://b?color=red"):
        with pytest.raises(BadStoreUrl):
            S3Location.parse(bad)


def test_the_dead_writers_parts_are_kept_not_sent_again(seaweed: SeaweedStore) -> None:
    store = _s3(seaweed)
    data = os.urandom(2 * PART_SIZE)
    first = store.begin()
    _write(first, data)
    first.keep()
    client = seaweed.client()
    bucket = store.location.bucket
    [upload] = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    etags = [p["ETag"] for p in client.list_parts(Bucket=bucket, Key=upload["Key"],
                                                    UploadId=upload["UploadId"])["Parts"]]
    resumed = _s3_same(store, "node-b").resume(first.handle, 2 * PART_SIZE)
    # the dead writer's upload, completed with its own parts, is the first segment
    head = client.head_object(Bucket=bucket, Key=upload["Key"])
    assert head["ContentLength"] == 2 * PART_SIZE
    assert head["ETag"].strip('"').endswith(f"-{len(etags)}")  # a multipart object
    resumed.commit("packages/k/e.tgz")
    assert _read(store, "packages/k/e.tgz") == data


def _s3_same(store: S3Store, owner: str) -> S3Store:
    return S3Store(store.location, store.name, owner)


def test_a_cut_that_falls_inside_a_part_is_refused(seaweed: SeaweedStore) -> None:
    store = _s3(seaweed)
    first = store.begin()
    _write(first, os.urandom(2 * PART_SIZE))
    first.keep()
    with pytest.raises(ValueError, match="cannot be cut"):
        _s3_same(store, "node-b").resume(first.handle, PART_SIZE + MiB)


def test_a_part_missing_in_the_middle_ends_what_is_kept(seaweed: SeaweedStore) -> None:
    """Parts go out two at a time: the writer may die with part 3 sent and part 2 not."""
    store = _s3(seaweed)
    data = os.urandom(3 * PART_SIZE)
    first = store.begin()
    first.keep()
    client = seaweed.client()
    bucket = store.location.bucket
    [upload] = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    for number in (1, 3):
        client.upload_part(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"],
                           PartNumber=number,
                           Body=data[(number - 1) * PART_SIZE:number * PART_SIZE])
    assert store.staged_size(first.handle) == 2 * PART_SIZE  # what was sent
    with pytest.raises(ValueError, match="cannot be cut"):
        _s3_same(store, "node-b").resume(first.handle, 2 * PART_SIZE)
    resumed = _s3_same(store, "node-b").resume(first.handle, PART_SIZE)
    assert b"".join(resumed.read_staged(PART_SIZE)) == data[:PART_SIZE]


def test_a_store_that_is_gone_fails_with_its_name(own_seaweed: SeaweedStore) -> None:
    store = _s3(own_seaweed)
    upload = store.begin()
    upload.write(b"x" * MiB)
    upload.commit("packages/a/kept")
    own_seaweed.stop()
    try:
        with pytest.raises(OSError, match=r"store node-a .* cannot be reached"):
            store.begin()
        with pytest.raises(OSError, match="Could not connect"):
            store.check()
    finally:
        own_seaweed.start()
    assert _read(store, "packages/a/kept") == b"x" * MiB  # nothing lost meanwhile
