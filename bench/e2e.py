"""End-to-end download time: POST → package listed, against `curl -o f URL` in the same run.

Target (issue 5): swdepot's time <= 1.25 x curl's plain download of the same file from the
same local server, for HTTP, HTTPS (curl verifying too) and FTP. Also shown: curl followed
by sha256sum, what a user does by hand to download *and* verify, and the disk's floor: two
direct writes of the same size side by side (dd), which is what swdepot's two durable
repository copies ask of the disk while curl -o only fills the page cache.

    python bench/e2e.py [--size-mib 1024] [--reps 3] [--protocols http,https,ftp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    MiB,
    cpu_shares,
    cpu_times,
    curl_and_sha256,
    curl_download,
    make_cert,
    make_image,
    median,
    start_ftp,
    start_http,
    swdepot,
    table,
    two_direct_copies,
    warm,
)

TARGET = 1.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--protocols", default="http,https,ftp")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "swdepot-bench")
    args = parser.parse_args()
    work: Path = args.workdir
    www = work / "www"
    image = make_image(www, args.size_mib * MiB)
    warm(image)
    ca, cert, key = make_cert(work / "tls")
    rows, ok = [], True
    for protocol in args.protocols.split(","):
        if protocol == "ftp":
            server = start_ftp(www)
        else:
            server = start_http(www, work / "nginx",
                                **({"cert": cert, "key": key} if protocol == "https" else {}))
        try:
            url = server.url(image.name)
            curl_times, hash_times, swd_times, disk_times = [], [], [], []
            start = cpu_times()
            with swdepot(work, ca_file=ca) as service:
                for _ in range(args.reps):  # interleaved, so drift hits all contenders alike
                    curl_times.append(curl_download(url, work / "curl.out", ca_file=ca))
                    hash_times.append(curl_and_sha256(url, work / "curl.out", ca_file=ca))
                    swd_times.append(service.download(url))
                    service.clear()
                    disk_times.append(two_direct_copies(service.data_dir, image.stat().st_size))
            _, stolen = cpu_shares(start, cpu_times())
            c, h, s = median(curl_times), median(hash_times), median(swd_times)
            d = median(disk_times)
            met = s / c <= TARGET
            ok &= met
            rows.append([f"{protocol} ({server.kind})", f"{args.size_mib} MiB", f"{c:.2f}",
                         f"{h:.2f}", f"{d:.2f}", f"{s:.2f}", f"{s / c:.2f}", f"{s / h:.2f}",
                         f"{s / d:.2f}", f"{stolen:.0%}", "met" if met else "NOT met"])
        finally:
            server.stop()
    print(table(rows, ["protocol (server)", "size", "curl s", "curl+sha256sum s",
                       "2 direct copies s (dd)", "swdepot s", "swdepot/curl",
                       "swdepot/(curl+sha)", "swdepot/disk", "CPU stolen",
                       f"<= {TARGET}x curl"]))
    print(f"medians of {args.reps} interleaved runs; swdepot = POST to package listed "
          "(transfer + sha256 + validation + both repository copies, fsynced); "
          "2 direct copies = the disk's floor for those copies; CPU stolen = the share "
          "of the machine's CPU time the hypervisor took during the protocol's runs")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
