"""Peak RSS of the service while it downloads packages of growing size.

Target (issue 5): under 80 MB during a 4 GiB download, and not growing with package size
(10 MiB vs 1 GiB vs 4 GiB in the same run). Each size runs in a fresh service so the peak
(VmHWM) belongs to that download alone.

Below the service run its zygote (zygote.py: forked at start, before any thread), the
worker processes it forks (workers.py: a download's intake runs in one,
software/ingest_process.py), and the transfer each intake forks (transfer/process.py).
Their pages are shared with the service until one of them writes to them, so each
one's own cost is its private memory (USS: Private_Clean + Private_Dirty). A worker and
its transfer also share the transfer's ring of 1 MiB slots, which is private to neither
of them: shared memory mapped by the descendants and not by the service is added once.
All of it is sampled every 2 ms. The figure judged is the service's peak RSS
plus the children's peak, an upper bound of what the processes hold at once.

    python bench/memory.py [--sizes-mib 10,1024,4096]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import MiB, make_image, start_http, swdepot, table, warm

LIMIT_MB = 80


def children(pid: int) -> list[int]:
    """The process's children, from each of its threads' ``children`` list: cheap enough
    to read every few milliseconds."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in listing.read_text().split()]
        except OSError:
            continue  # the thread ended
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def shared_anonymous(pid: int) -> dict[str, int]:
    """Shared anonymous mappings (``mmap(MAP_SHARED)``): start address -> resident kB."""
    found: dict[str, int] = {}
    start = None
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if not line[:1].isupper():  # a mapping's header: "start-end perms ... path"
                fields = line.split()
                start = fields[0].split("-")[0] if line.endswith("/dev/zero (deleted)") \
                    else None
            elif start is not None and line.startswith("Rss:"):
                found[start] = int(line.split()[1])
    except OSError:
        pass
    return found


def private_kb(pid: int) -> int:
    """USS: the pages only this process holds."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        return 0
    return total


class ChildSampler:
    """Peak memory of the service's child processes while a download runs: their private
    pages, and the shared memory that only they map (the transfer's ring), once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._service_shared = shared_anonymous(pid)  # counted in the service's RSS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # every 2 ms: a 10 MiB download's children live for a few tens of milliseconds
        while not self._stop.wait(0.002):
            found = descendants(self.pid)
            shared: dict[str, int] = {}
            for child in found:
                shared.update(shared_anonymous(child))
            held = sum(private_kb(child) for child in found) + sum(
                kb for start, kb in shared.items() if start not in self._service_shared)
            self.peak_kb = max(self.peak_kb, held)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mib", default="10,1024,4096")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "swdepot-bench")
    args = parser.parse_args()
    work: Path = args.workdir
    sizes = [int(s) for s in args.sizes_mib.split(",")]
    images = [make_image(work / "www", s * MiB) for s in sizes]
    server = start_http(work / "www", work / "nginx")
    rows, peaks = [], []
    try:
        for size, image in zip(sizes, images, strict=True):
            warm(image)
            with swdepot(work) as service:
                idle = service.rss_peak_kb()
                sampler = ChildSampler(service.proc.pid)
                seconds = service.download(server.url(image.name))
                child = sampler.stop()
                parent = service.rss_peak_kb()
            peak = parent + child
            peaks.append(peak)
            rows.append([f"{size} MiB", f"{idle / 1024:.1f}", f"{parent / 1024:.1f}",
                         f"{child / 1024:.1f}", f"{peak / 1024:.1f}",
                         f"{(peak - idle) / 1024:.1f}", f"{seconds:.2f}"])
    finally:
        server.stop()
    flat = max(peaks) - min(peaks) < 10 * 1024  # within 10 MB across sizes
    under = max(peaks) < LIMIT_MB * 1024
    print(table(rows, ["package", "RSS at start MB", "service peak RSS MB",
                       "children peak MB", "total MB", "growth MB", "download s"]))
    print(f"peak < {LIMIT_MB} MB: {'met' if under else 'NOT met'}; "
          f"flat across sizes (spread < 10 MB): {'met' if flat else 'NOT met'}")
    return 0 if flat and under else 1


if __name__ == "__main__":
    raise SystemExit(main())
