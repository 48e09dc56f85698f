"""One entry point for every scheme: picks the protocol client for a URL."""

from __future__ import annotations

from pathlib import Path

from swdepot.transfer.control import Control
from swdepot.transfer.curl import CurlFetcher, CurlOptions
from swdepot.transfer.file import FileFetcher
from swdepot.transfer.sink import PackageSink
from swdepot.transfer.url import Credentials, DownloadUrl


class TransferEngine:
    """Streams the bytes a URL names into a sink, or raises an ONTAP error."""

    def __init__(self, curl_options: CurlOptions, import_dir: Path | None) -> None:
        self._curl = CurlFetcher(curl_options)
        self._file = FileFetcher(import_dir)

    def fetch(self, url: DownloadUrl, credentials: Credentials, sink: PackageSink,
              control: Control) -> None:
        if url.scheme == "file":
            self._file.fetch(url, sink, control)
        else:
            self._curl.fetch(url, credentials, sink, control)
