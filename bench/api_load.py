"""The API under load while a 1 GiB download runs.

Targets (issue 5): 50 concurrent clients polling GET /api/cluster/jobs/{uuid} and
GET /api/cluster/software/download get p99 < 20 ms and >= 3,000 requests/s in total, and
the download slows by < 15 % compared with no polling. The service's own event-loop lag
is read from /api/swdepot/runtime. Load comes from wrk (Debian package `wrk`) over
HTTPS keep-alive with Basic auth, as ONTAP clients poll.

    python bench/api_load.py [--size-mib 1024] [--connections 50] [--reps 3]
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import ADMIN_PASSWORD, MiB, make_image, median, start_http, swdepot, table, warm

P99_MS, MIN_RPS, MAX_SLOWDOWN = 20.0, 3000.0, 0.15
LUA = """
local paths = {"%s", "/api/cluster/software/download"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% 2) + 1])
end
"""


def run_wrk(base: str, job_path: str, seconds: float, connections: int, workdir: Path) -> dict:
    script = workdir / "poll.lua"
    script.write_text(LUA % job_path)
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    done = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
         "-s", str(script), "-H", f"Authorization: Basic {token}", base],
        check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale,
            "non2xx": int(errors.group(1)) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "swdepot-bench")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2
    work: Path = args.workdir
    image = make_image(work / "www", args.size_mib * MiB)
    warm(image)
    server = start_http(work / "www", work / "nginx")
    quiet, loaded, loads, lags = [], [], [], []
    try:
        with swdepot(work) as service:
            url = server.url(image.name)
            for _ in range(args.reps):
                quiet.append(service.download(url))
                service.clear()
                service.get("/api/swdepot/runtime?reset=true")
                result: dict = {}
                thread = threading.Thread(
                    target=lambda out=result: out.update(seconds=service.download(url)))
                thread.start()
                time.sleep(0.05)
                job = service.get("/api/cluster/software/download")["job"]["uuid"]
                # poll for about as long as the download takes (bounded)
                load = run_wrk(service.base, f"/api/cluster/jobs/{job}",
                               max(1.0, min(20.0, median(quiet) * 0.9)), args.connections, work)
                thread.join(timeout=300)
                loaded.append(result["seconds"])
                loads.append(load)
                lags.append(service.get("/api/swdepot/runtime")["loop_lag_ms"])
                service.clear()
    finally:
        server.stop()
    q, lo = median(quiet), median(loaded)
    rps = median([x["rps"] for x in loads])
    p99 = median([x["p99_ms"] for x in loads])
    slowdown = lo / q - 1
    lag_p99 = median([x["p99"] or 0.0 for x in lags])
    lag_max = max(x["max"] or 0.0 for x in lags)
    errors = sum(x["non2xx"] for x in loads)
    ok = p99 < P99_MS and rps >= MIN_RPS and slowdown < MAX_SLOWDOWN and errors == 0
    print(table([[f"{rps:.0f}", f"{p99:.1f}", f"{q:.2f}", f"{lo:.2f}", f"{slowdown:+.0%}",
                  f"{lag_p99:.1f} / {lag_max:.1f}", str(errors)]],
                ["req/s", "p99 ms", "download s (quiet)", "download s (polled)", "slowdown",
                 "loop lag p99/max ms", "non-2xx"]))
    print(f"targets: p99 < {P99_MS} ms, >= {MIN_RPS:.0f} req/s, slowdown < "
          f"{MAX_SLOWDOWN:.0%}: {'met' if ok else 'NOT met'} "
          f"({args.connections} connections, medians of {args.reps})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
