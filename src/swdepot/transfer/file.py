"""FILE URLs: import a file from the operator's import directory, and nowhere else.

ONTAP's FILE scheme reads from a USB stick (``file://usb0/image.tgz``); swdepot's
equivalent is one import directory. The URL path is taken relative to it, the
resolved path must stay inside it (no ``..``, no symlink leading out), and the final
component is opened without following links.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from swdepot.transfer.control import Cancelled, Control, failed
from swdepot.transfer.sink import BlockGatherer
from swdepot.transfer.url import DownloadUrl

FILE_HOSTS = ("", "localhost", "usb0")
CHUNK = 1 << 20


def resolve_import_path(import_dir: Path | None, url: DownloadUrl) -> Path:
    """The real path a FILE URL names, or the transfer failure that explains why not."""
    if import_dir is None:
        raise failed("FILE URLs are disabled because no import directory is configured")
    if url.host not in FILE_HOSTS:
        raise failed(f'FILE URLs must name the local import directory, not host "{url.host}"')
    root = import_dir.resolve()
    candidate = (root / url.path.lstrip("/")).resolve()
    if not candidate.is_relative_to(root) or candidate == root:
        raise failed("the FILE URL points outside the import directory")
    return candidate


class FileFetcher:
    """Copies a file from the import directory into a sink."""

    def __init__(self, import_dir: Path | None) -> None:
        self._import_dir = import_dir

    def fetch(self, url: DownloadUrl, sink: BlockGatherer, control: Control) -> None:
        path = resolve_import_path(self._import_dir, url)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise failed("the file was not found in the import directory") from None
        except OSError as exc:
            raise failed(f"the file could not be opened ({exc.strerror})") from None
        with os.fdopen(fd, "rb", buffering=0) as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise failed("the FILE URL does not name a regular file")
            sink.check_expected_size(info.st_size)
            done = 0
            while chunk := fh.read(CHUNK):
                if control.cancelled:
                    raise Cancelled()
                sink.write(chunk)
                done += len(chunk)
                control.progress(done, info.st_size)
