"""One entry point for every scheme: picks the protocol client and retries it.

HTTP(S) and FTP attempts run under the :class:`~swdepot.transfer.retry.Retrier`, each
continuing where the last stopped; FILE reads a local file and has nothing to retry.

HTTP(S) begins as ONTAP does on the wire: three ``HEAD`` requests, each on a connection
of its own, then the ``GET`` (NetApp's own sample ``ndu_upgrade.py`` serves the image
from a server that answers exactly those four requests and then waits for them all).
What the HEADs tell is used at once: the size (a package above the limit is refused
before a byte is fetched; progress knows its total), and for a transfer that continues
staged bytes, the validators and ``Accept-Ranges`` (a file that changed, or a server
that cannot serve ranges, starts from zero without a wasted request). A HEAD that gets
no answer, or an error, costs nothing: the GET's own answer decides, and its retries
are GETs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from swdepot.transfer.control import Control, Validator
from swdepot.transfer.curl import CurlFetcher, CurlOptions, Probe, ResumeState
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


HEAD_REQUESTS = 3  # what ONTAP sends before its GET
HEAD_TIMEOUT = 30.0  # seconds one HEAD may take


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
        if url.scheme in ("http", "https"):
            self._use(self._probe(url, credentials, control), sink, control, known)
        self._retrier.run(
            lambda time_left: self._curl.attempt(url, credentials, sink, control, resume,
                                                 time_left),
            sink, control, what=url.url,
        )

    def _probe(self, url: DownloadUrl, credentials: Credentials,
               control: Control) -> Probe | None:
        """ONTAP's three HEADs; the last one that was answered 2xx."""
        learned = None
        for _ in range(HEAD_REQUESTS):
            if control.cancelled:
                break
            probe = self._curl.probe(url, credentials, control, HEAD_TIMEOUT)
            if probe is not None and probe.status is not None and 200 <= probe.status < 300:
                learned = probe
        return learned

    @staticmethod
    def _use(probe: Probe | None, sink: BlockGatherer, control: Control,
             known: Validator | None) -> None:
        if probe is None:
            return
        seen = probe.validator
        if seen.total is not None:
            sink.check_expected_size(seen.total)  # too large: refused before any byte
            control.progress(sink.bytes_written, seen.total)
        if sink.bytes_written and (probe.ranges is False
                                   or (known is not None and not known.same_file(seen))):
            sink.rewind()  # the staged bytes cannot be continued: from zero, at once
