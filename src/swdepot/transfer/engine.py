"""One entry point for every scheme: picks the protocol client and retries it.

HTTP(S) and FTP attempts run under the :class:`~swdepot.transfer.retry.Retrier`, each
continuing where the last stopped; FILE reads a local file and has nothing to retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from swdepot.transfer.control import Control, Validator
from swdepot.transfer.curl import CurlFetcher, CurlOptions, ResumeState
from swdepot.transfer.file import FileFetcher
from swdepot.transfer.retry import Retrier, RetryPolicy
from swdepot.transfer.sink import BlockGatherer
from swdepot.transfer.url import Credentials, DownloadUrl


class Engine(Protocol):
    """Anything that fetches a URL into a sink: this engine, or it run in a child process."""

    def fetch(self, url: DownloadUrl, credentials: Credentials, sink: BlockGatherer,
              control: Control, *, known: Validator | None = None) -> None:
        """Fetch from ``sink.bytes_written`` on; ``known``: what identified the file when
        those bytes were fetched (a taken-over transfer), or None."""


class TransferEngine:
    """Streams the bytes a URL names into a sink, or raises an ONTAP error."""

    def __init__(self, curl_options: CurlOptions, import_dir: Path | None, *,
                 retry: RetryPolicy | None = None, max_duration: float = 3600.0) -> None:
        self._curl = CurlFetcher(curl_options)
        self._file = FileFetcher(import_dir)
        self._retrier = Retrier(retry or RetryPolicy(), max_duration)

    def fetch(self, url: DownloadUrl, credentials: Credentials, sink: BlockGatherer,
              control: Control, *, known: Validator | None = None) -> None:
        if url.scheme == "file":
            if sink.bytes_written:
                sink.rewind()  # a local copy is quick: nothing to prove, start over
            self._file.fetch(url, sink, control)
            return
        resume = ResumeState(known, identified=control.source_identified)
        self._retrier.run(
            lambda time_left: self._curl.attempt(url, credentials, sink, control, resume,
                                                 time_left),
            sink, control, what=url.url,
        )
