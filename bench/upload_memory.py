"""Upload throughput and the service's peak memory for one large upload.

Starts ``swdepot serve`` on loopback in a temporary directory, streams a generated
firmware file (no inspection, so the transfer path itself is measured) of ``--mib`` MiB
through ``POST /api/cluster/software/upload`` and prints MiB/s and the service's peak
resident memory (VmHWM) before and after. Run: ``.venv/bin/python bench/upload_memory.py``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PASSWORD = "bench-secret"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="swdepot-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swdepot", "serve", "--data-dir", tmp, "--port", str(port),
             "--log-level", "warning"],
            env={**os.environ, "SWDEPOT_ADMIN_PASSWORD": PASSWORD})
        try:
            session = requests.Session()
            session.trust_env = False
            session.verify = False
            session.auth = ("admin", PASSWORD)
            base = f"https://127.0.0.1:{port}/api"
            for _ in range(200):
                try:
                    session.get(base + "/cluster", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            before = peak_rss_mib(proc.pid)
            block = os.urandom(1 << 20)
            boundary = "bench"
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    'filename="bench_disk_fw.LOD"\r\n\r\n').encode()

            def body():
                yield head
                for _ in range(args.mib):
                    yield block
                yield f"\r\n--{boundary}--\r\n".encode()

            start = time.perf_counter()
            content_type = f"multipart/form-data; boundary={boundary}"
            response = session.post(base + "/cluster/software/upload?return_timeout=120",
                                    data=body(), headers={"content-type": content_type})
            elapsed = time.perf_counter() - start
            print(f"status {response.status_code}: {args.mib} MiB in {elapsed:.1f} s = "
                  f"{args.mib / elapsed:.0f} MiB/s (written twice: two node stores, fsync)")
            print(f"service peak RSS: {before:.0f} MiB before, {peak_rss_mib(proc.pid):.0f} MiB "
                  "after")
            session.close()
        finally:
            # uvicorn waits for TLS connections to shut down cleanly (up to ~30 s)
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    import urllib3

    urllib3.disable_warnings()
    main()
