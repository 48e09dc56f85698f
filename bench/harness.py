"""Shared pieces of the benchmarks: local servers, a swdepot process, timing helpers.

Every server binds 127.0.0.1; nothing here talks to any other address. The static file
server is nginx (Debian's nginx-light) when it is installed, otherwise a small
sendfile-based Python server, so curl and swdepot are measured against the same source.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import random
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ADMIN_PASSWORD = "bench-secret"
MiB = 1 << 20
GiB = 1 << 30

RETURN_TIMEOUT = 120  # seconds; ONTAP's largest return_timeout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# --- test data -----------------------------------------------------------------------------

def make_image(directory: Path, size: int) -> Path:
    """An ONTAP-named image (a gzip tar, like real images) of about ``size`` bytes.

    The payload is random (incompressible, as the compressed contents of real images are),
    deflated by the standard library's zlib at level 1, which stores incompressible data
    as stored blocks, as gzip does for real images. (zlib-ng's level 1 would Huffman-code
    it instead, growing the file 5 % and making it 10x slower to inflate: not realistic.)
    Cached between runs.
    """
    path = directory / f"9171P{size // MiB}_q_image.tgz"  # version 9.17.1P<MiB>
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("image/payload.bin")
        info.size = size
        tar.addfile(info, _RandomReader(random.Random(size), size))
    tmp.rename(path)
    return path


class _RandomReader:
    def __init__(self, rng: random.Random, size: int) -> None:
        self._rng, self._left = rng, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def warm(path: Path) -> None:
    """Read a file once so that every contender finds it in the page cache."""
    with path.open("rb") as fh:
        while fh.read(16 * MiB):
            pass


# --- static file servers -----------------------------------------------------------------

@dataclass
class StaticServer:
    root: Path
    port: int
    scheme: str
    kind: str
    proc: subprocess.Popen[bytes] | None = None
    stopper: threading.Event | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self.stopper is not None:
            self.stopper.set()


def nginx_path() -> str | None:
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") \
        or None


def start_nginx(root: Path, workdir: Path, *, cert: Path | None = None,
                key: Path | None = None) -> StaticServer:
    """nginx serving ``root`` with sendfile; TLS when a certificate is given."""
    binary = nginx_path()
    assert binary, "nginx is not installed"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    tls = cert is not None
    listen = f"127.0.0.1:{port} ssl" if tls else f"127.0.0.1:{port}"
    tls_conf = (f"ssl_certificate {cert}; ssl_certificate_key {key}; "
                "ssl_protocols TLSv1.2 TLSv1.3;") if tls else ""
    conf = workdir / f"nginx-{port}.conf"
    conf.write_text(f"""
daemon off; worker_processes 1; pid {workdir}/nginx-{port}.pid;
error_log {workdir}/nginx-{port}.err info;
events {{ worker_connections 256; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_timeout 30;
  client_body_temp_path {workdir}/tmp-{port}; proxy_temp_path {workdir}/tmp-{port};
  fastcgi_temp_path {workdir}/tmp-{port}; uwsgi_temp_path {workdir}/tmp-{port};
  scgi_temp_path {workdir}/tmp-{port};
  server {{ listen {listen}; root {root}; {tls_conf} }}
}}
""")
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return StaticServer(root, port, "https" if tls else "http", "nginx", proc=proc)


class _SendfileHandler(http.server.SimpleHTTPRequestHandler):
    """GET with os.sendfile, so the fallback server is not the bottleneck."""

    def log_message(self, *args: object) -> None:
        pass

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        self.wfile.flush()
        offset, size = 0, os.fstat(source.fileno()).st_size
        while offset < size:
            sent = os.sendfile(self.connection.fileno(), source.fileno(), offset, size - offset)
            if sent == 0:
                break
            offset += sent


def start_python_http(root: Path) -> StaticServer:
    port = free_port()
    handler = lambda *a, **k: _SendfileHandler(*a, directory=str(root), **k)  # noqa: E731
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    stopper = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop_when_asked() -> None:
        stopper.wait()
        server.shutdown()
        server.server_close()

    threading.Thread(target=stop_when_asked, daemon=True).start()
    return StaticServer(root, port, "http", "python-sendfile", stopper=stopper)


def start_http(root: Path, workdir: Path, *, cert: Path | None = None,
               key: Path | None = None) -> StaticServer:
    if nginx_path():
        return start_nginx(root, workdir, cert=cert, key=key)
    if cert is not None:
        raise RuntimeError("HTTPS benchmarks need nginx (apt-get install nginx-light)")
    return start_python_http(root)


def start_ftp(root: Path) -> StaticServer:
    """pyftpdlib in its own process (so its CPU is not the client's), anonymous read."""
    port = free_port()
    code = (
        "import logging,sys\n"
        "from pyftpdlib.authorizers import DummyAuthorizer\n"
        "from pyftpdlib.handlers import FTPHandler\n"
        "from pyftpdlib.servers import FTPServer\n"
        "logging.disable(logging.CRITICAL)\n"
        "a=DummyAuthorizer(); a.add_anonymous(sys.argv[1])\n"
        "class H(FTPHandler):\n    authorizer=a\n    use_sendfile=True\n"
        "FTPServer(('127.0.0.1', int(sys.argv[2])), H).serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return StaticServer(root, port, "ftp", "pyftpdlib", proc=proc)


def make_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (trustme); returns (ca, cert, key)."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.private_key_pem.write_to_path(str(key_path))
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    return ca_path, cert_path, key_path


# --- swdepot under test --------------------------------------------------------------------

class Swdepot:
    """``swdepot serve`` as a child process with its own fresh data directory."""

    def __init__(self, workdir: Path, *, ca_file: Path | None = None,
                 import_dir: Path | None = None, extra_args: tuple[str, ...] = (),
                 data_dir: Path | None = None,
                 command: tuple[str, ...] = ("-m", "swdepot")) -> None:
        """``data_dir``: another service's, to run a second node of it (left in place).
        ``command``: what runs ``serve`` after the interpreter (bench/servers.py with a
        server's name for another HTTP server)."""
        self.workdir = workdir
        self._owns_data = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="swdepot-bench-", dir=workdir))
        self.port = free_port()
        args = [sys.executable, *command, "serve", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--allow-network", "127.0.0.1/32",
                "--log-level", "warning", *extra_args]
        if ca_file is not None:
            args += ["--ca-file", str(ca_file)]
        if import_dir is not None:
            args += ["--import-dir", str(import_dir)]
        pid_file = self.data_dir / f"serving-{self.port}.pid"
        env = {**os.environ, "SWDEPOT_ADMIN_PASSWORD": ADMIN_PASSWORD,
               "SWDEPOT_BENCH_PID_FILE": str(pid_file)}
        for name in ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy"):
            env.pop(name, None)
            env.pop(name.upper(), None)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = ("admin", ADMIN_PASSWORD)
        self.session.verify = False
        self.base = f"https://127.0.0.1:{self.port}"
        self.first_answer = self._wait_ready()
        #: the process that serves: this one's child where the server forks its worker
        self.pid = int(pid_file.read_text()) if pid_file.exists() else self.proc.pid

    def _wait_ready(self) -> float:
        import urllib3

        urllib3.disable_warnings()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                if self.session.get(self.base + "/api/cluster", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError("swdepot did not start")

    def get(self, path: str) -> dict:
        return self.session.get(self.base + path, timeout=30).json()

    def download(self, url: str) -> float:
        """Seconds from POST to the package being listed (job success).

        One request with ONTAP's ``return_timeout``: the service answers 201 the moment
        the job ends, so the figure has no polling interval in it and the benchmark
        spends no CPU polling while the download runs. A download longer than that
        (2 minutes, ONTAP's limit) is polled for.
        """
        start = time.perf_counter()
        response = self.session.post(self.base + "/api/cluster/software/download"
                                     f"?return_timeout={RETURN_TIMEOUT}",
                                     json={"url": url}, timeout=RETURN_TIMEOUT + 30)
        if response.status_code == 201:
            return time.perf_counter() - start
        if response.status_code != 202:
            raise RuntimeError(f"download failed: {response.text}")
        uuid = response.json()["job"]["uuid"]
        while True:
            job = self.get(f"/api/cluster/jobs/{uuid}?fields=state,message")
            if job["state"] == "success":
                return time.perf_counter() - start
            if job["state"] == "failure":
                raise RuntimeError(f"download failed: {job['message']}")
            time.sleep(0.02)  # 1-2 % resolution on a 1 GiB run, without loading the API

    def clear(self) -> None:
        """Delete every package so the next run downloads again."""
        for record in self.get("/api/cluster/software/packages")["records"]:
            r = self.session.delete(self.base + "/api/cluster/software/packages/"
                                    + record["version"] + "?return_timeout=60", timeout=90)
            assert r.status_code in (200, 202), r.text

    def rss_peak_kb(self) -> int:
        """VmHWM: the process's peak resident set size so far."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # not the next run's problem
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._owns_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def swdepot(workdir: Path, **kwargs: object) -> Iterator[Swdepot]:
    service = Swdepot(workdir, **kwargs)  # type: ignore[arg-type]
    try:
        yield service
    finally:
        service.stop()


# --- reference commands and reporting ----------------------------------------------------

def time_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def curl_download(url: str, out: Path, *, ca_file: Path | None = None) -> float:
    args = ["curl", "-sS", "--fail", "--noproxy", "*", "-o", str(out), url]
    if ca_file is not None:
        args[1:1] = ["--cacert", str(ca_file)]
    seconds = time_command(args)
    out.unlink()
    return seconds


def curl_and_sha256(url: str, out: Path, *, ca_file: Path | None = None) -> float:
    start = time.perf_counter()
    args = ["curl", "-sS", "--fail", "--noproxy", "*", "-o", str(out), url]
    if ca_file is not None:
        args[1:1] = ["--cacert", str(ca_file)]
    subprocess.run(args, check=True)
    subprocess.run(["sha256sum", str(out)], check=True, stdout=subprocess.DEVNULL)
    out.unlink()
    return time.perf_counter() - start


def two_direct_copies(directory: Path, size: int) -> float:
    """Seconds for two ``dd oflag=direct conv=fsync`` writes of ``size`` bytes side by side.

    The disk's part of swdepot's work: both repository copies, durable, on the same
    device. ``curl -o`` leaves its file in the page cache and never waits for the disk,
    so this is the floor below which no durable download can go on this machine.
    """
    count = max(1, size // MiB)
    start = time.perf_counter()
    writers = [subprocess.Popen(["dd", "if=/dev/zero", f"of={directory / f'dd-{n}.out'}",
                                 "bs=1M", f"count={count}", "oflag=direct", "conv=fsync"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for n in range(2)]
    for writer in writers:
        if writer.wait() != 0:
            raise RuntimeError("dd failed")
    seconds = time.perf_counter() - start
    for n in range(2):
        (directory / f"dd-{n}.out").unlink()
    return seconds


def proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces
    and parentheses): index 1 is the parent's pid, 11 and 12 user and system CPU ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times() -> list[int]:
    """The machine's CPU time so far, in ticks: user, nice, system, idle, iowait, irq,
    softirq, steal, ... (``/proc/stat``)."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_shares(before: list[int], after: list[int]) -> tuple[float, float]:
    """Of the CPU time between two :func:`cpu_times`: the share busy (neither idle, nor
    waiting for the disk, nor stolen) and the share the hypervisor gave to other
    machines (steal). Every time on a virtual machine is stretched by the steal, curl's
    too; the tables print it so a slow run can be told from a slow program."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = max(1, sum(spent[:8]))
    idle, iowait, steal = spent[3], spent[4], spent[7]
    return (total - idle - iowait - steal) / total, steal / total


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(row: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
