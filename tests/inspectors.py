"""An inspector stand-in for tests of the package sink alone (the real inspector is
tested in test_packages.py)."""

from __future__ import annotations

from collections.abc import Callable


class RecordingInspector:
    """Accepts every block, records its size and gives its memory back at once."""

    def __init__(self) -> None:
        self.blocks: list[int] = []

    def feed(self, chunk: bytes | memoryview, release: Callable[[], None] | None = None) -> None:
        self.blocks.append(len(chunk))
        if release is not None:
            release()

    def failed(self) -> None:
        return None

    def abort(self) -> None:
        pass
