"""Which stores hold a package's copies: the ``stores`` setting made into blob stores.

No ``--store``: two local directories in the data directory (the embedded default,
ONTAP's primary and secondary node copies). One or two URLs: the first store takes the
primary copies, the second the secondary ones; with a single URL there is one copy per
package in swdepot's eyes and that store's own replication keeps the second (S3-style
stores replicate; a local directory does not, so one ``file://`` store is one copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from swdepot.repository.s3 import BadStoreUrl, S3Location, S3Store
from swdepot.repository.store import BlobStore, LocalDirStore


class StoreUnreachable(OSError):
    """A store named by the settings cannot be reached or used (start-up's check)."""


def blob_stores(urls: Sequence[str], default_roots: Sequence[Path], names: Sequence[str],
                owner: str) -> list[BlobStore]:
    """The stores ``urls`` name (``default_roots`` as local stores when there are none),
    named after ``names`` (the cluster nodes whose copies they hold), staging as ``owner``.
    Raises :class:`~swdepot.repository.s3.BadStoreUrl` for a URL of no known shape."""
    if len(urls) > 2:
        raise BadStoreUrl(f"--store is given at most twice (primary and secondary copies), "
                          f"not {len(urls)} times")
    if not urls:
        return [LocalDirStore(root, name, owner)
                for root, name in zip(default_roots, names, strict=True)]
    return [_open(url, name, owner) for url, name in zip(urls, names, strict=False)]


def _open(url: str, name: str, owner: str) -> BlobStore:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise BadStoreUrl(f"--store file URLs are file:///ABSOLUTE/PATH, not {url!r}")
        return LocalDirStore(Path(unquote(parts.path)), name, owner)
    return S3Store(S3Location.parse(url), name, owner)


def check_reachable(stores: Sequence[BlobStore]) -> None:
    """Raise :class:`StoreUnreachable` naming the first store that cannot be used."""
    for store in stores:
        if isinstance(store, S3Store):
            try:
                store.check()
            except OSError as exc:
                raise StoreUnreachable(f"cannot reach the package store {store.location}: "
                                       f"{exc.strerror or exc}") from None
