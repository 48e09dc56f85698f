"""A blob store on S3-compatible object storage (cluster mode's ``--store s3://…``).

Layout, below the store URL's bucket and prefix:

- ``<key>``: a blob's *manifest*, a small JSON object naming its segments in order and
  their sizes. Writing it is the commit: S3 puts are atomic, so a key either names a
  whole blob or nothing.
- ``.blobs/<owner>/<hex>.<n>``: segment ``n`` of the upload ``<owner>/<hex>`` (its
  handle). A segment is a completed multipart upload; the one being written is an
  incomplete multipart upload under the same name.

Why segments: the parts of an incomplete multipart upload cannot be read back, and a
node that takes a download over must replay the staged bytes through the sha256 and
the package inspector. So :meth:`S3Store.resume` completes the dead node's upload with
the parts it finished (they are kept, never sent again) into a segment, which can be
read, and the bytes that follow go into a new segment. A download nobody took over has
one segment.

Bytes are sent as they arrive: :meth:`S3Upload.write` gathers them into parts of
:data:`PART_SIZE` and uploads at most :data:`PARTS_IN_FLIGHT` parts at a time on
threads of its own, so memory stays flat with the package's size and the network
overlaps the transfer. Everything a store knows lives in the store: any process (the
intake's worker, the service, another node) finds an upload's state by its handle.

Errors of the object store surface as :class:`OSError` (``FileNotFoundError`` for a
missing object), as the local store's do, with the store's name in the message.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from swdepot.nodelock import slug

PART_SIZE = 8 << 20  # a multiple of the transfer's 1 MiB blocks; S3's minimum is 5 MiB
PARTS_IN_FLIGHT = 2  # per upload: the next part is sent while one is on the wire
BLOBS = ".blobs"
MANIFEST_FORMAT = "swdepot-blob/1"
_HANDLE = re.compile(r"[A-Za-z0-9._-]+/[0-9a-f]{32}")
_READ_PIECE = 1 << 20

log = logging.getLogger(__name__)


class BadStoreUrl(ValueError):
    """A ``--store`` value swdepot cannot use."""


@dataclass(frozen=True)
class S3Location:
    """Where an S3 store keeps its objects: ``s3://BUCKET[/PREFIX]?endpoint=URL``.

    ``region`` comes from the URL's ``region=`` or ``AWS_REGION`` (default us-east-1);
    the credentials from the standard AWS environment, never from the URL.
    """

    bucket: str
    prefix: str
    endpoint: str | None
    region: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise BadStoreUrl(f"--store must be file:///PATH or "
                              f"s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT, not {url!r}")
        if parts.username or parts.password:
            raise BadStoreUrl("--store s3:// takes its credentials from AWS_ACCESS_KEY_ID "
                              "and AWS_SECRET_ACCESS_KEY, not from the URL")
        query = parse_qs(parts.query)
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise BadStoreUrl(f"--store {url!r}: unknown parameter {sorted(unknown)[0]!r}")
        endpoint = query.get("endpoint", [None])[0]
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise BadStoreUrl(f"--store {url!r}: endpoint must be an http:// or https:// URL")
        region = (query.get("region", [None])[0] or os.environ.get("AWS_REGION")
                  or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        return cls(bucket=parts.hostname, prefix=parts.path.strip("/"), endpoint=endpoint,
                   region=region)

    def object(self, name: str) -> str:
        """The object key of ``name`` (a blob key or a segment name) in the bucket."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def name_of(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1:] if self.prefix else object_key

    def __str__(self) -> str:
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"s3://{where}" + (f" at {self.endpoint}" if self.endpoint else "")


@dataclass
class _Segment:
    index: int
    size: int


@dataclass
class _Current:
    """The incomplete multipart upload of the segment being written."""

    index: int
    upload_id: str
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)  # number → (etag, size)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts.values())


class S3Upload:
    """One staged upload: completed segments, the segment being written, unsent bytes.

    ``write`` is called from one thread (the sink's copy worker); parts go out on a
    pool of :data:`PARTS_IN_FLIGHT` threads, and a failed part fails the next
    ``write`` or ``flush``. Part numbers follow the bytes' order within a segment.
    """

    def __init__(self, store: S3Store, handle: str, segments: list[_Segment],
                 current: _Current | None, *, durable: bool) -> None:
        self._store = store
        self._handle = handle
        self._segments = segments
        self._current = current
        self._next_part = max(current.parts, default=0) + 1 if current else 1
        self._size = sum(s.size for s in segments) + (current.size if current else 0)
        self._durable = durable
        self._finished = False
        self._buffer = bytearray(PART_SIZE)
        self._fill = 0
        self._in_flight: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._short = False  # the current segment ends in a part below the minimum size

    @property
    def handle(self) -> str:
        return self._handle

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes | memoryview) -> None:
        assert not self._finished, "upload already finished"
        self._durable = False
        if self._short:
            self._close_segment()  # bytes after a flush's short part: a new segment
        view = memoryview(chunk).cast("B")
        self._size += len(view)
        while view:
            take = min(len(view), PART_SIZE - self._fill)
            self._buffer[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == PART_SIZE:
                part, self._buffer, self._fill = self._buffer, bytearray(PART_SIZE), 0
                self._send(part)

    def _send(self, part: bytearray) -> None:
        """Upload ``part`` as the next part, waiting while too many are on the wire."""
        if self._current is None:
            self._open_segment()
        current = self._current
        assert current is not None
        self._raise_failed()
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._in_flight.pop(0).result()
        number, self._next_part = self._next_part, self._next_part + 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT,
                                            thread_name_prefix=f"swdepot-s3-{self._store.name}")
        name = self._segment_name(current.index)

        def send() -> None:
            etag = self._store.upload_part(name, current.upload_id, number, part)
            with self._lock:
                current.parts[number] = (etag, len(part))

        self._in_flight.append(self._pool.submit(send))

    def _raise_failed(self) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            self._in_flight.remove(future)
            future.result()  # raises the part's OSError

    def _wait_parts(self) -> None:
        try:
            while self._in_flight:
                self._in_flight.pop(0).result()
        finally:
            for future in self._in_flight:
                future.cancel()
            self._in_flight.clear()

    def _open_segment(self) -> None:
        index = max((s.index for s in self._segments), default=-1) + 1
        upload_id = self._store.create_upload(self._segment_name(index))
        self._current = _Current(index, upload_id)
        self._next_part = 1
        self._short = False

    def _close_segment(self) -> None:
        """Complete the segment being written (every part sent) into a readable one."""
        self._wait_parts()
        current, self._current = self._current, None
        self._short = False
        if current is None:
            return
        name = self._segment_name(current.index)
        if current.parts:
            self._store.complete_upload(name, current.upload_id, current.parts)
            self._segments.append(_Segment(current.index, current.size))
        else:
            self._store.abort_upload(name, current.upload_id)

    def _segment_name(self, index: int) -> str:
        return f"{BLOBS}/{self._handle}.{index}"

    def flush(self) -> None:
        """Send the unsent bytes as a (short) last part and wait for every part."""
        assert not self._finished, "upload already finished"
        if self._durable:
            return
        if self._fill:
            part = self._buffer[:self._fill]
            self._short = self._fill < PART_SIZE
            self._fill = 0
            self._send(part)
        self._wait_parts()
        self._durable = True

    def commit(self, key: str) -> None:
        """Complete the last segment and write the manifest: the blob exists at once."""
        self.flush()
        self._close_segment()
        self._finished = True
        self._stop_pool()
        self._store.put_manifest(key, [(self._segment_name(s.index), s.size)
                                       for s in self._segments])

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(OSError):
            self._wait_parts()
        self._stop_pool()
        current, self._current = self._current, None
        try:
            if current is not None:
                self._store.abort_upload(self._segment_name(current.index), current.upload_id)
            for segment in self._segments:
                self._store.delete_object(self._segment_name(segment.index))
        except OSError as exc:
            log.warning("could not remove staged upload %s from store %s (%s); start-up "
                        "clean-up removes it", self._handle, self._store.name, exc)

    def detach(self) -> None:
        assert self._durable, "flush before handing an upload over"
        self.keep()

    def keep(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(OSError):
            self._wait_parts()
        self._stop_pool()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def read_staged(self, length: int) -> Iterator[bytes]:
        """The first ``length`` bytes, from the completed segments (a resumed upload has
        every staged byte in them)."""
        left = length
        for segment in sorted(self._segments, key=lambda s: s.index):
            if left <= 0:
                break
            take = min(left, segment.size)
            yield from self._store.read_object(self._segment_name(segment.index), take)
            left -= take
        if left > 0:
            raise OSError(errno.EIO, f"{self._handle} in store {self._store.name} holds "
                          f"fewer than {length} readable bytes")


class S3Store:
    """A bucket (and prefix) of an S3-compatible object store; see the module docstring.

    The boto3 client is made per process (a worker forked from the service makes its
    own: connection pools must not be shared across a fork) and is thread-safe.
    """

    def __init__(self, location: S3Location, name: str, owner: str = "operator",
                 client: Any = None) -> None:
        self.location = location
        self.name = name
        self._own = slug(owner)
        self._client = client
        self._client_pid = os.getpid() if client is not None else -1
        self._client_lock = threading.Lock()
        self._inherited: list[Any] = []

    def __repr__(self) -> str:
        return f"S3Store({self.name!r}, {self.location})"

    # -- the client and its errors ----------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client_pid != os.getpid():
            with self._client_lock:
                if self._client_pid != os.getpid():
                    if self._client is not None:
                        # the parent's: its sockets are the parent's, and closing them
                        # here (when collected) could close descriptors reused since
                        self._inherited.append(self._client)
                    self._client = _new_client(self.location)
                    self._client_pid = os.getpid()
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """botocore's errors as OSError, naming this store and what was being done."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = f"store {self.name} ({self.location}): {what}: {code or status} " \
                   f"{error.get('Message', '')}".rstrip()
            if code in ("NoSuchKey", "NoSuchUpload", "404", "NotFound") or status == 404:
                raise FileNotFoundError(errno.ENOENT, text) from None
            raise OSError(errno.EIO, text) from None
        except BotoCoreError as exc:
            raise OSError(errno.EHOSTUNREACH, f"store {self.name} ({self.location}) cannot "
                          f"be reached: {what}: {exc}") from None

    def check(self) -> None:
        """Raise OSError, its text the cause alone, unless the bucket can be reached and
        read (start-up's check)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            reason = {404: "no such bucket", 403: "access denied"}.get(
                status, f"{exc.response.get('Error', {}).get('Code')} (HTTP {status})")
            raise OSError(errno.EIO, reason) from None
        except BotoCoreError as exc:
            raise OSError(errno.EHOSTUNREACH, str(exc)) from None

    # -- operations the uploads use ---------------------------------------------------------

    def create_upload(self, name: str) -> str:
        with self._errors("starting an upload"):
            answer = self.client.create_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.object(name),
                ContentType="application/octet-stream")
        return str(answer["UploadId"])

    def upload_part(self, name: str, upload_id: str, number: int,
                    body: bytes | bytearray) -> str:
        with self._errors(f"sending part {number}"):
            answer = self.client.upload_part(
                Bucket=self.location.bucket, Key=self.location.object(name),
                UploadId=upload_id, PartNumber=number, Body=body)
        return str(answer["ETag"])

    def complete_upload(self, name: str, upload_id: str,
                        parts: dict[int, tuple[str, int]]) -> None:
        with self._errors("completing an upload"):
            self.client.complete_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.object(name),
                UploadId=upload_id, MultipartUpload={"Parts": [
                    {"PartNumber": n, "ETag": parts[n][0]} for n in sorted(parts)]})

    def abort_upload(self, name: str, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._errors("aborting an upload"):
            self.client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.object(name),
                UploadId=upload_id)

    def delete_object(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._errors(f"deleting {name}"):
            self.client.delete_object(Bucket=self.location.bucket,
                                      Key=self.location.object(name))

    def read_object(self, name: str, length: int | None = None) -> Iterator[bytes]:
        """The object's first ``length`` bytes (all without), in pieces."""
        kwargs: dict[str, Any] = {}
        if length is not None:
            if length == 0:
                return
            kwargs["Range"] = f"bytes=0-{length - 1}"
        with self._errors(f"reading {name}"):
            body = self.client.get_object(Bucket=self.location.bucket,
                                          Key=self.location.object(name), **kwargs)["Body"]
            try:
                while piece := body.read(_READ_PIECE):
                    yield piece
            finally:
                body.close()

    def put_manifest(self, key: str, segments: list[tuple[str, int]]) -> None:
        manifest = {"format": MANIFEST_FORMAT, "size": sum(size for _, size in segments),
                    "segments": [{"name": name, "size": size} for name, size in segments]}
        with self._errors(f"writing {key}"):
            self.client.put_object(Bucket=self.location.bucket,
                                   Key=self.location.object(self._key(key)),
                                   Body=json.dumps(manifest).encode(),
                                   ContentType="application/json")

    def manifest(self, key: str) -> list[tuple[str, int]]:
        """The segments (name, size) of the blob at ``key``; FileNotFoundError if none."""
        raw = b"".join(self.read_object(self._key(key)))
        try:
            data = json.loads(raw)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(data.get("format"))
            return [(str(s["name"]), int(s["size"])) for s in data["segments"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OSError(errno.EIO, f"store {self.name}: {key} is no swdepot blob "
                          f"manifest ({exc})") from None

    # -- finding an upload by its handle ----------------------------------------------------

    def _check_handle(self, handle: str) -> None:
        if not _HANDLE.fullmatch(handle) or handle.startswith(".."):
            raise ValueError(f"not an upload handle of this store: {handle!r}")

    def _state(self, handle: str) -> tuple[list[_Segment], list[_Current]]:
        """The handle's completed segments and its incomplete uploads (oldest first)."""
        self._check_handle(handle)
        stem = self.location.object(f"{BLOBS}/{handle}.")
        segments = [_Segment(int(key[len(stem):]), size)
                    for key, size, _ in self._list(stem) if key[len(stem):].isdigit()]
        uploads: list[_Current] = []
        with self._errors("listing uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.location.bucket, Prefix=stem)
            for page in pages:
                for found in page.get("Uploads", []):
                    suffix = found["Key"][len(stem):]
                    if suffix.isdigit():
                        uploads.append(_Current(int(suffix), found["UploadId"]))
        uploads.sort(key=lambda u: u.index)
        for upload in uploads:
            upload.parts = self._parts(f"{BLOBS}/{handle}.{upload.index}", upload.upload_id)
        if not segments and not uploads:
            raise ValueError(f"no staged upload {handle!r} in store {self.name}")
        return sorted(segments, key=lambda s: s.index), uploads

    def _parts(self, name: str, upload_id: str) -> dict[int, tuple[str, int]]:
        parts: dict[int, tuple[str, int]] = {}
        with self._errors("listing parts"):
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.location.bucket, Key=self.location.object(name),
                UploadId=upload_id)
            for page in pages:
                for part in page.get("Parts", []):
                    parts[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
        return parts

    def _list(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """(object key, size, last modified) of every object below ``prefix``."""
        with self._errors("listing objects"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield str(obj["Key"]), int(obj["Size"]), _epoch(obj["LastModified"])

    # -- BlobStore ----------------------------------------------------------------------------

    def begin(self) -> S3Upload:
        upload = S3Upload(self, f"{self._own}/{uuid.uuid4().hex}", [], None, durable=False)
        upload._open_segment()  # the handle exists in the store from now on
        return upload

    def adopt(self, handle: str) -> S3Upload:
        segments, uploads = self._state(handle)
        current = uploads[-1] if uploads else None
        return S3Upload(self, handle, segments, current, durable=True)

    def resume(self, handle: str, length: int) -> S3Upload:
        """The handle's first ``length`` bytes as readable segments, to be written on.

        The dead writer's finished parts are kept: its newest upload is completed with
        those of its parts that follow each other from part 1 and fit in ``length``; the
        rest is dropped. ``length`` must fall where a part ends (ValueError otherwise:
        the caller starts afresh).
        """
        segments, uploads = self._state(handle)
        kept: list[_Segment] = []
        total = 0
        for segment in segments:
            if total + segment.size > length:
                break
            kept.append(segment)
            total += segment.size
        whole = len(kept) == len(segments)
        newest = uploads[-1] if uploads else None
        for upload in uploads:
            name = f"{BLOBS}/{handle}.{upload.index}"
            follows = not kept or upload.index > kept[-1].index
            parts: dict[int, tuple[str, int]] = {}
            if upload is newest and whole and follows:
                for number in sorted(upload.parts):
                    etag, size = upload.parts[number]
                    if number != len(parts) + 1 or total + size > length:
                        break  # a gap (a part lost with its writer) or past the cut
                    parts[number] = (etag, size)
                    total += size
            if parts:
                self.complete_upload(name, upload.upload_id, parts)
                kept.append(_Segment(upload.index, sum(s for _, s in parts.values())))
            else:
                self.abort_upload(name, upload.upload_id)
        if total != length:
            raise ValueError(f"store {self.name}: {handle} cannot be cut at byte {length} "
                             f"(its finished parts end at byte {total})")
        for dropped in segments:
            if dropped not in kept:
                self.delete_object(f"{BLOBS}/{handle}.{dropped.index}")
        return S3Upload(self, handle, kept, None, durable=True)

    def staged_size(self, handle: str) -> int:
        """Bytes in the handle's segments and the finished parts of its newest upload."""
        segments, uploads = self._state(handle)
        current = uploads[-1].size if uploads else 0
        return sum(s.size for s in segments) + current

    def _key(self, key: str) -> str:
        if not key or key.startswith((BLOBS, "/")) or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return key

    def open(self, key: str) -> BinaryIO:
        segments = self.manifest(key)
        raw = _SegmentReader(self, [name for name, _ in segments])
        return io.BufferedReader(raw, buffer_size=_READ_PIECE)

    def delete(self, key: str) -> None:
        """Remove the blob's segments, then its manifest (a retry finds the manifest)."""
        try:
            segments = self.manifest(key)
        except FileNotFoundError:
            return
        except OSError:
            segments = []  # an unreadable manifest: remove the key itself
        for name, _ in segments:
            self.delete_object(name)
        self.delete_object(self._key(key))

    def exists(self, key: str) -> bool:
        """The manifest and every segment it names, each of the recorded size."""
        try:
            segments = self.manifest(key)
            for name, size in segments:
                with self._errors(f"reading {name}"):
                    head = self.client.head_object(Bucket=self.location.bucket,
                                                   Key=self.location.object(name))
                if int(head["ContentLength"]) != size:
                    return False
        except FileNotFoundError:
            return False
        return True

    def keys(self) -> Iterator[str]:
        root = self.location.object("")
        for key, _, _ in self._list(root):
            name = key[len(root):]
            if not name.startswith(f"{BLOBS}/"):
                yield name

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        for name, _ in self.manifest(key):
            for piece in self.read_object(name):
                digest.update(piece)
        return digest.hexdigest()

    def changed(self, key: str) -> float:
        with self._errors(f"reading {key}"):
            head = self.client.head_object(Bucket=self.location.bucket,
                                           Key=self.location.object(self._key(key)))
        return _epoch(head["LastModified"])

    def free_bytes(self) -> int | None:
        return None

    def clean_staging(self, *, keep: Collection[str], abandoned_before: float,
                      own_leftovers: bool) -> int:
        """Abort uploads and remove segments no manifest names, as the local store does
        with its staging files (see :class:`~swdepot.repository.store.BlobStore`)."""
        stem = self.location.object(f"{BLOBS}/")
        referenced: set[str] = set()
        for key in list(self.keys()):
            with contextlib.suppress(OSError):
                referenced.update(name for name, _ in self.manifest(key))

        def removable(handle: str, changed: float) -> bool:
            if handle in keep:
                return False
            return (own_leftovers and handle.split("/")[0] == self._own) \
                or changed < abandoned_before

        count = 0
        for key, _, changed in list(self._list(stem)):
            name = self.location.name_of(key)
            handle = name[len(BLOBS) + 1:].rpartition(".")[0]
            if name in referenced or not removable(handle, changed):
                continue
            self.delete_object(name)
            count += 1
        with self._errors("listing uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.location.bucket, Prefix=stem)
            found = [(u["Key"], u["UploadId"], _epoch(u["Initiated"]))
                     for page in pages for u in page.get("Uploads", [])]
        for key, upload_id, initiated in found:
            name = self.location.name_of(key)
            handle = name[len(BLOBS) + 1:].rpartition(".")[0]
            if handle in keep:
                continue
            changed = max([initiated, *(_epoch(p) for p in
                                        self._part_times(name, upload_id))])
            if removable(handle, changed):
                self.abort_upload(name, upload_id)
                count += 1
        return count

    def _part_times(self, name: str, upload_id: str) -> list[datetime]:
        with contextlib.suppress(FileNotFoundError), self._errors("listing parts"):
            answer = self.client.list_parts(Bucket=self.location.bucket,
                                            Key=self.location.object(name),
                                            UploadId=upload_id)
            return [p["LastModified"] for p in answer.get("Parts", [])]
        return []


class _SegmentReader(io.RawIOBase):
    """The segments of one blob, read one after the other as one stream."""

    def __init__(self, store: S3Store, names: list[str]) -> None:
        self._store = store
        self._names = list(names)
        self._pieces: Iterator[bytes] | None = None
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._left:
            if self._pieces is None:
                if not self._names:
                    return 0
                self._pieces = self._store.read_object(self._names.pop(0))
            piece = next(self._pieces, None)
            if piece is None:
                self._pieces = None
                continue
            self._left = piece
        take = min(len(view), len(self._left))
        view[:take] = self._left[:take]
        self._left = self._left[take:]
        return take

    def close(self) -> None:
        if self._pieces is not None:
            with contextlib.suppress(Exception):
                self._pieces.close()  # type: ignore[attr-defined]
            self._pieces = None
        super().close()


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _new_client(location: S3Location) -> Any:
    import boto3
    from botocore.config import Config

    # Checksums: the package's sha256 is computed and verified by swdepot itself, and
    # botocore's default CRC32 of every part costs CPU per byte (docs/performance.md).
    config = Config(s3={"addressing_style": "path"}, region_name=location.region,
                    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3,
                    read_timeout=60, max_pool_connections=PARTS_IN_FLIGHT * 2 + 4,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", endpoint_url=location.endpoint,
                                          config=config)
