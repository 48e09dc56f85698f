"""Peak RSS of the service while it downloads packages of growing size.

Target (issue 5): under 80 MB during a 4 GiB download, and not growing with package size
(10 MiB vs 1 GiB vs 4 GiB in the same run). Each size runs in a fresh service so the peak
(VmHWM) belongs to that download alone.

    python bench/memory.py [--sizes-mib 10,1024,4096]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import MiB, make_image, start_http, swdepot, table, warm

LIMIT_MB = 80


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
                seconds = service.download(server.url(image.name))
                peak = service.rss_peak_kb()
            peaks.append(peak)
            rows.append([f"{size} MiB", f"{idle / 1024:.1f}", f"{peak / 1024:.1f}",
                         f"{(peak - idle) / 1024:.1f}", f"{seconds:.2f}"])
    finally:
        server.stop()
    flat = max(peaks) - min(peaks) < 10 * 1024  # within 10 MB across sizes
    under = max(peaks) < LIMIT_MB * 1024
    print(table(rows, ["package", "RSS at start MB", "peak RSS MB", "growth MB",
                       "download s"]))
    print(f"peak < {LIMIT_MB} MB: {'met' if under else 'NOT met'}; "
          f"flat across sizes (spread < 10 MB): {'met' if flat else 'NOT met'}")
    return 0 if flat and under else 1


if __name__ == "__main__":
    raise SystemExit(main())
