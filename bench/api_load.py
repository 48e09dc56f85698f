"""The API under load while a 1 GiB download runs.

Targets (issue 5): 50 concurrent clients polling GET /api/cluster/jobs/{uuid} and
GET /api/cluster/software/download get p99 < 20 ms and >= 3,000 requests/s in total, and
the download slows by < 15 % compared with no polling. The service's own event-loop lag
is read from /api/swdepot/runtime.

Load comes from h2load (Debian package ``nghttp2-client``): HTTP/1.1 over TLS keep-alive
with Basic auth on every request, as ONTAP clients poll, alternating the two URLs. Two
runs per repetition, each over a download of its own:

- **paced** (the target): 50 clients each polling ``--rate`` times a second (62, so 3,100
  requests/s are asked for), which is what "50 clients polling at 3,000 requests/s"
  describes. The clients connect and poll for a warm-up second before the download is
  posted; the measured window then lies inside the download.
- **flat out** (capacity): the same clients, each sending its next request as soon as the
  last is answered. Their request rate is whatever the service can do, so it shows the
  headroom; the download's slowdown here measures the cost of that unbounded load, not
  of 3,000 requests/s.

Two references take the same paced load in the same run, each over a download of its
own: a do-nothing ASGI app under swdepot's own uvicorn configuration and TLS
(``bench/nullapp.py``, answering the bytes of a real poll), and nginx serving those bytes
as a static file over TLS. They show what the load costs the machine with no
application work at all, i.e. whether the target can be met here by any service. A
diagnosis row runs the same paced polls against a second ``swdepot serve`` on the same
data directory (another node of the same cluster) while the first one downloads. Since
the download's threads run in child processes of the service (software/ingest_process.py)
the service's own loop runs none of them either, so the two rows should agree: a gap is
what remains of the job thread that waits for the download in the service.

Rows for other server stacks take the same paced load in the same run, each over a
download of its own service (its own data directory; issue 19): swdepot's app under
uvicorn with uvicorn's own httptools protocol, and under granian (bench/servers.py), polls
answered by the ASGI-level PollShortcut in both, i.e. only through the servers' public
interfaces; ``--servers`` picks them (a server not installed is left out with a note:
``pip install -e '.[bench]'``). The second table gives each stack's service CPU per
request and its loop thread's share, from the process that serves.

The job polled is the previous download's, ended (h2load needs its URLs before the
download is posted); the running one is answered from memory the same way
(jobs/cache.py).

wrk, which this benchmark used before, busy-loops while its TLS handshakes wait for the
server (it watches for writability): on this machine it took 80-90 % of a core to send
600-800 requests/s at a loaded service, CPU the service and the download then lacked.

What limits the figure is printed too, from the kernel's accounting in the same run: the
service's CPU time per request with no download running, and, under the paced load, how
much of the time the event-loop thread ran and how much it was runnable but waiting for
a CPU (``/proc/<pid>/task/<tid>/schedstat``), how busy the machine was, and how much of
its CPU time the hypervisor gave to other machines (steal).

    python bench/api_load.py [--size-mib 1024] [--clients 50] [--rate 62] [--reps 3]
                             [--servers uvicorn,granian]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    ADMIN_PASSWORD,
    MiB,
    Swdepot,
    cpu_shares,
    cpu_times,
    free_port,
    make_image,
    median,
    nginx_path,
    proc_stat,
    start_http,
    start_nginx,
    swdepot,
    table,
    wait_port,
    warm,
)

P99_MS, MIN_RPS, MAX_SLOWDOWN = 20.0, 3000.0, 0.15
WARM_UP = 1.0
KINDS = {  # run name -> what the table calls it
    "swdepot": "swdepot, paced (the target)",
    "null app": "reference: do-nothing app, same uvicorn + TLS",
    "nginx static": "reference: nginx, the answer as a static file",
    "swdepot flat out": "swdepot, flat out (capacity)",
    "second node": "diagnosis: a second swdepot process on the same data dir answers",
}
#: bench/servers.py's servers: name -> (the module it needs, what the tables call it)
OTHER_SERVERS = {
    "uvicorn": ("uvicorn", "uvicorn's own httptools protocol + ASGI PollShortcut"),
    "granian": ("granian", "granian 1 worker (Rust, rustls) + ASGI PollShortcut"),
}
STACKS = {"swdepot": "swdepot serve (uvicorn + api/protocol.py)",
          **{name: label for name, (_, label) in OTHER_SERVERS.items()}}


def kind_name(name: str) -> str:
    return KINDS[name] if name in KINDS else f"{STACKS[name]}, paced"


@dataclass
class Load:
    """One h2load run: what was served in the measured window."""

    rps: float
    p99_ms: float
    failed: int  # requests answered with anything but 200, or not answered
    loop_ran: float = 0.0
    loop_waited: float = 0.0
    machine: float = 0.0
    stolen: float = 0.0


def run_h2load(base: str, paths: list[str], seconds: float, clients: int, rate: int | None,
               workdir: Path) -> Load:
    """``clients`` connections polling ``paths`` for ``seconds`` after the warm-up."""
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    args = ["h2load", "--h1", "-c", str(clients), "-t", "2",
            "-D", f"{round(seconds * 1000)}ms", "--warm-up-time", f"{round(WARM_UP * 1000)}ms",
            "-H", f"Authorization: Basic {token}", "--log-file", str(log),
            *(["--rps", str(rate)] if rate else []), *(base + p for p in paths)]
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0 or not log.exists():
        raise RuntimeError(f"h2load failed: {done.stderr or done.stdout}")
    # one line per request of the measured window: start (us), status, duration (us)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    durations = sorted(int(r[2]) for r in rows)
    served = sum(1 for r in rows if r[1] == "200")
    unanswered = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", done.stdout)
    failed = len(rows) - served + (sum(map(int, unanswered.groups())) if unanswered else 0)
    if failed:  # say what went wrong: h2load's own summary
        print(f"{base}: " + "; ".join(line.strip() for line in done.stdout.splitlines()
                                      if line.startswith(("requests:", "status codes:"))))
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))] / 1000
    return Load(rps=served / seconds, p99_ms=p99, failed=failed)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loop_sched(pid: int) -> tuple[float, float]:
    """Seconds the main (event-loop) thread ran and waited on a run queue so far."""
    ran, waited, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(ran) / 1e9, int(waited) / 1e9


def polled_download(service: Swdepot, url: str, paths: list[str], seconds: float,
                    clients: int, rate: int | None, workdir: Path, *,
                    base: str | None = None) -> tuple[float, Load]:
    """Download ``url`` while the clients poll ``base`` (the service itself by default);
    the download starts after the warm-up."""
    result: dict[str, float] = {}
    marks: dict[str, tuple] = {}

    def download() -> None:
        time.sleep(WARM_UP)
        marks["start"] = (time.perf_counter(), _loop_sched(service.pid), cpu_times())
        result["seconds"] = service.download(url)

    thread = threading.Thread(target=download)
    thread.start()
    load = run_h2load(base or service.base, paths, seconds, clients, rate, workdir)
    ended, (ran1, waited1), after = (
        time.perf_counter(), _loop_sched(service.pid), cpu_times())
    thread.join(timeout=300)
    # from the download's start to the load's end: the measured window
    started, (ran0, waited0), before = marks["start"]
    span = ended - started
    load.loop_ran, load.loop_waited = (ran1 - ran0) / span, (waited1 - waited0) / span
    load.machine, load.stolen = cpu_shares(before, after)
    return result["seconds"], load


def quiet_cost(service: Swdepot, paths: list[str], clients: int, workdir: Path
               ) -> tuple[Load, float]:
    """Flat-out polling with no download: the capacity and the service's CPU per request."""
    seconds = 3.0
    before = _cpu_seconds(service.pid)
    load = run_h2load(service.base, paths, seconds, clients, None, workdir)
    used = _cpu_seconds(service.pid) - before
    # the warm-up's requests cost CPU too: count them at the measured rate
    return load, used / (load.rps * (seconds + WARM_UP)) * 1e6


@contextlib.contextmanager
def references(service: Swdepot, paths: list[str], workdir: Path
               ) -> Iterator[dict[str, tuple[str, list[str]]]]:
    """What else takes the same polls: the null app and nginx, each serving a real poll's
    answer with the service's certificate, and a second node of the service:
    name -> (base URL, paths)."""
    answer = service.session.get(service.base + paths[0], timeout=30)
    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in ("date", "server")]
    saved = workdir / "poll-answer.json"
    saved.write_text(json.dumps({"body": answer.text, "headers": headers}))
    static = workdir / "static"
    static.mkdir(exist_ok=True)
    (static / "job.json").write_bytes(answer.content)
    cert, key = service.data_dir / "tls" / "server.crt", service.data_dir / "tls" / "server.key"
    port = free_port()
    null = subprocess.Popen([sys.executable, str(Path(__file__).with_name("nullapp.py")),
                             str(port), str(cert), str(key), str(saved)])
    nginx = start_nginx(static, workdir / "nginx-static", cert=cert, key=key) \
        if nginx_path() else None
    # Another node of the same cluster (its own node lock and staging directory).
    node_config = workdir / "second-node.toml"
    node_config.write_text('node_name = "swdepot-bench-2"\n')
    node = Swdepot(workdir, data_dir=service.data_dir,
                   extra_args=("--config", str(node_config)))
    try:
        wait_port(port)
        found = {"null app": (f"https://127.0.0.1:{port}", ["/a", "/b"])}
        if nginx is not None:
            found["nginx static"] = (f"https://127.0.0.1:{nginx.port}", ["/job.json"] * 2)
        found["second node"] = (node.base, paths)
        yield found
    finally:
        node.stop()
        null.terminate()
        null.wait(timeout=10)
        if nginx is not None:
            nginx.stop()


def verdict(load_rps: float, p99: float, slowdown: float, failed: int) -> bool:
    return (load_rps >= MIN_RPS and p99 < P99_MS and failed == 0
            and slowdown < MAX_SLOWDOWN)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=int, default=62,
                        help="requests per second per client in the paced run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--config", type=Path, help="a settings file for the service")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "swdepot-bench")
    parser.add_argument("--servers", default=",".join(OTHER_SERVERS),
                        help="other HTTP servers to run swdepot's app under, side by side "
                        "(bench/servers.py; comma-separated, '' for none)")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        print("h2load is not installed (apt-get install nghttp2-client)")
        return 2
    others = [name for name in args.servers.split(",") if name]
    if unknown := set(others) - set(OTHER_SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    for name in list(others):
        if importlib.util.find_spec(OTHER_SERVERS[name][0]) is None:
            print(f"{name} is not installed (pip install -e '.[bench]'): its row is left out")
            others.remove(name)
    work: Path = args.workdir
    image = make_image(work / "www", args.size_mib * MiB)
    warm(image)
    server = start_http(work / "www", work / "nginx")
    quiet: list[float] = []
    runs: dict[str, list[tuple[float, Load]]] = {name: [] for name in KINDS}
    runs.update({name: [] for name in others})
    lags: dict[str, list[dict]] = {name: [] for name in ("swdepot", *others)}
    costs: dict[str, list[tuple[Load, float]]] = {}
    try:
        config = work / "api_load.toml"
        # lag sampled every 10 ms, not the default 100 ms, so short stalls show
        config.write_text((args.config.read_text() if args.config else "")
                          + "\nloop_lag_interval = 0.01\n")
        with contextlib.ExitStack() as stack:
            service = stack.enter_context(swdepot(work, extra_args=("--config", str(config))))
            url = server.url(image.name)

            def quiet_download() -> float:
                """The reference: no polls, but the same idle second after the last
                run's clean-up that a polled download gets as its clients' warm-up
                (deleting the last copies keeps the disk busy a while)."""
                time.sleep(WARM_UP)
                seconds = service.download(url)
                service.clear()
                return seconds

            def poll_paths(on: Swdepot) -> list[str]:
                job = on.get("/api/cluster/software/download")["job"]["uuid"]
                return [f"/api/cluster/jobs/{job}", "/api/cluster/software/download"]

            quiet.append(quiet_download())
            paths = poll_paths(service)
            # each other server's service downloads once, so that its polls have a job
            served: dict[str, tuple[Swdepot, list[str]]] = {}
            for name in others:
                other = stack.enter_context(swdepot(
                    work, extra_args=("--config", str(config)),
                    command=(str(Path(__file__).with_name("servers.py")), name)))
                other.download(url)
                other.clear()
                served[name] = (other, poll_paths(other))

            def polled(window: float, rate: int | None, base: str | None = None,
                       targets: list[str] = paths, on: Swdepot = service
                       ) -> tuple[float, Load]:
                done = polled_download(on, url, targets, window, args.clients, rate,
                                       work, base=base)
                on.clear()
                return done

            def lagged(name: str, on: Swdepot, window: float) -> None:
                """A paced run of ``on``'s own polls, with its loop's lag."""
                on.get("/api/swdepot/runtime?reset=true")
                runs[name].append(polled(window, args.rate, targets=served[name][1]
                                         if name in served else paths, on=on))
                lags[name].append(on.get("/api/swdepot/runtime")["loop_lag_ms"])

            with references(service, paths, work) as refs:
                for rep in range(args.reps):
                    if rep:
                        quiet.append(quiet_download())
                    window = max(1.0, min(20.0, median(quiet) * 0.9))
                    lagged("swdepot", service, window)
                    for name, (other, _) in served.items():
                        lagged(name, other, window)
                    for name, (base, targets) in refs.items():
                        runs[name].append(polled(window, args.rate, base, targets))
                    runs["swdepot flat out"].append(polled(window, None))
            for _ in range(args.reps):  # alternated, as the paced runs are
                for name, (on, targets) in [("swdepot", (service, paths)), *served.items()]:
                    costs.setdefault(name, []).append(
                        quiet_cost(on, targets, args.clients, work))
    finally:
        server.stop()
    q = median(quiet)
    rows = []
    verdicts: dict[str, bool] = {}
    for name, kind_runs in runs.items():
        if not kind_runs:
            continue  # nginx missing
        rps = median([load.rps for _, load in kind_runs])
        p99 = median([load.p99_ms for _, load in kind_runs])
        polled_s = median([seconds for seconds, _ in kind_runs])
        slowdown = polled_s / q - 1
        failed = sum(load.failed for _, load in kind_runs)
        verdicts[name] = verdict(rps, p99, slowdown, failed)
        asked = "as fast as answered" if "flat" in name else f"{args.clients} x {args.rate}/s"
        rows.append([kind_name(name), asked, f"{rps:.0f}", f"{p99:.1f}", f"{q:.2f}",
                     f"{polled_s:.2f}", f"{slowdown:+.0%}", str(failed),
                     "met" if verdicts[name] else "not met"])
    ok = verdicts["swdepot"]
    print(table(rows, ["polled server", "clients asking", "req/s", "p99 ms",
                       "download s (quiet)", "download s (polled)", "slowdown", "failed",
                       "targets"]))
    print(table([[kind_name(name), *(f"{load.p99_ms:.1f} ms, {seconds / q - 1:+.0%}"
                                     for seconds, load in kind_runs)]
                 for name, kind_runs in runs.items() if kind_runs],
                ["each run: p99, slowdown", *(f"run {n + 1}" for n in range(args.reps))]))
    cost_rows = []
    for name, stack_costs in costs.items():
        paced = runs[name]
        cost = median([c for _, c in stack_costs])
        lag_p99 = median([x["p99"] or 0.0 for x in lags[name]])
        lag_max = max(x["max"] or 0.0 for x in lags[name])
        cost_rows.append([STACKS.get(name, name),
                          f"{median([load.rps for load, _ in stack_costs]):.0f}",
                          f"{median([load.p99_ms for load, _ in stack_costs]):.1f}",
                          f"{cost:.0f}", f"{MIN_RPS * cost / 1e6:.2f}",
                          f"{lag_p99:.1f} / {lag_max:.1f}",
                          f"{median([load.loop_ran for _, load in paced]):.0%}",
                          f"{median([load.loop_waited for _, load in paced]):.0%}"])
    print(table(cost_rows, ["server stack", "req/s, no download", "p99 ms, no download",
                            "service CPU us/request", f"cores for {MIN_RPS:.0f} req/s",
                            "loop lag p99/max ms (paced)", "loop thread ran (paced)",
                            "loop thread waited for a CPU"]))
    paced_all = [load for name in lags for _, load in runs[name]]
    print(f"machine during the paced runs of swdepot's app: "
          f"{median([load.machine for load in paced_all]):.0%} of {os.cpu_count()} cores busy, "
          f"{median([load.stolen for load in paced_all]):.0%} of the CPU stolen by the "
          f"hypervisor (medians)")
    print(f"targets (paced run): p99 < {P99_MS} ms, >= {MIN_RPS:.0f} req/s, slowdown < "
          f"{MAX_SLOWDOWN:.0%}: {'met' if ok else 'NOT met'} "
          f"({args.clients} clients, medians of {args.reps})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
