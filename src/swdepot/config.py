"""Settings: one explicit value object, built from a TOML file and command-line flags.

Nothing reads settings from module globals: the service is built from a
:class:`Settings` instance, so tests make as many independent services as they like.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_VERSION = "9.16.1"


@dataclass(frozen=True)
class ClusterIdentity:
    """Who this 'cluster' says it is; ONTAP clients read these through /api/cluster."""

    name: str = "swdepot"
    uuid: str = "6a9a7c2e-0c3f-11ef-9c2a-005056bb0001"
    version: str = DEFAULT_VERSION
    nodes: tuple[str, ...] = ("swdepot-01", "swdepot-02")


@dataclass(frozen=True)
class Settings:
    """Every knob of a swdepot service. Paths default to places under ``data_dir``."""

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8443
    tls: bool = True
    cert_file: Path | None = None
    key_file: Path | None = None
    admin_user: str = "admin"
    admin_password: str | None = None
    admin_password_file: Path | None = None
    cluster: ClusterIdentity = field(default_factory=ClusterIdentity)
    # Which cluster node this process is (default: the first configured node). Processes
    # that share one database need different names: a node, when it starts, ends the jobs
    # its own previous life left active, and only those.
    node_name: str | None = None
    # Download engine
    import_dir: Path | None = None
    ca_files: tuple[Path, ...] = ()
    use_system_ca: bool = True
    allowed_networks: tuple[str, ...] = ()
    connect_timeout: float = 30.0
    stall_timeout: float = 120.0  # seconds below stall_min_speed before a transfer is ended
    stall_min_speed: int = 1  # bytes per second; 1 means "no progress at all"
    max_duration: float = 3600.0  # ONTAP's 1-hour limit (10551383), retries included
    max_package_bytes: int = 64 << 30
    # Run each download's intake (copies, sha256, inspection) in a worker process and its
    # transfer in a child of that, so neither the API nor libcurl's per-16-KiB callbacks
    # wait for a GIL another part holds (docs/performance.md). False: on a service thread.
    transfer_process: bool = True
    # Worker processes kept ready for intakes (with transfer_process): one download runs
    # at a time, so one is enough; more are forked while all are busy (an upload during a
    # download), up to job_workers, and retired once idle. A dead one is replaced at once.
    worker_processes: int = 1
    # CPU priority (nice, 0-19) of a download's child processes (intake and transfer, every
    # thread of theirs), so that when the CPU is short a poll does not wait behind the
    # download it asks about. A quiet download loses nothing (the choice of 10 against 19:
    # docs/performance.md). Threads in the service itself (uploads,
    # transfer_process = false) keep the default: a low-priority thread holding the GIL
    # would stall the event loop. 0 turns it off.
    transfer_nice: int = 10
    # Seconds between the event loop's lag samples (GET /api/swdepot/runtime). Each sample
    # wakes an idle loop (the cost: docs/operations.md); benchmarks chasing short stalls
    # set 0.01.
    loop_lag_interval: float = 0.1
    # What one HTTP request may take (api/protocol.py): a request line and headers above
    # max_request_head_bytes get 431; a head not complete request_head_timeout seconds
    # after the connection opened or the request began gets 408; a request body that
    # sends nothing for request_body_timeout seconds (while the service reads) is cut off.
    max_request_head_bytes: int = 64 * 1024
    request_head_timeout: float = 10.0
    request_body_timeout: float = 60.0
    # Retries of transient transfer failures (reset, truncation, 5xx, connect timeout)
    retries: int = 5  # consecutive failed attempts without progress before giving up
    retry_base_delay: float = 1.0  # first back-off; doubles per failure, with jitter
    retry_max_delay: float = 60.0
    # Failed logins per client address before it must wait (HTTP 429)
    login_max_failures: int = 10
    login_failure_window: float = 60.0
    # How often a node looks whether any process changed the users (a password changed on
    # another node, `swdepot user add`): an old password still verified in the cache works
    # at most this long after the change.
    credentials_check_seconds: float = 0.5
    min_free_bytes: int = 0  # room every node store keeps free; uploads may not eat into it
    # Packages
    require_signatures: bool = False
    trust_dir: Path | None = None
    # Clean-up of what crashed processes left in the shared stores. A blob no record
    # names is removed only after it has been unreferenced this long (far longer than a
    # publish takes between committing its blobs and recording it); another node's
    # staged upload only once nobody has written it this long (twice max_duration).
    orphan_grace: float = 600.0
    abandoned_staging_after: float = 7200.0
    # Jobs
    job_retention_seconds: float = 300.0
    job_workers: int = 4
    # A job's owner renews its lease every third of this; a job whose lease has run out
    # (its process hangs, or died on another machine) is taken over by any free worker.
    job_lease_seconds: float = 15.0
    # The key download passwords are sealed with in the job rows (sealing.py); default
    # secrets/job.key in the data directory. Nodes sharing a database share this file.
    job_key_file: Path | None = None
    # Where jobs, the catalog, users, the profile and leases live: None is SQLite in the
    # data directory (swdepot.db); postgresql://USER@HOST:PORT/DBNAME is cluster mode,
    # one database shared by every node (persistence/stores.py).
    database: str | None = None
    # Where package bytes live: none is two local directories in the data directory
    # (store/primary and store/secondary); else one or two store URLs, the first for the
    # primary copies, the second for the secondary ones: file:///PATH or
    # s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT (credentials from the AWS_*
    # environment). With one URL, that store's own replication keeps the second copy.
    stores: tuple[str, ...] = ()
    # Software update: how long one simulated step takes, and one of `stabilize_minutes`
    update_step_seconds: float = 30.0
    update_minute_seconds: float = 60.0

    # --- derived locations -------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.node_name or self.cluster.nodes[0]

    @property
    def database_path(self) -> Path:
        return self.data_dir / "swdepot.db"

    @property
    def store_roots(self) -> tuple[Path, Path]:
        """Primary and secondary node stores (ONTAP keeps a package and its backup copy)."""
        return (self.data_dir / "store" / "primary", self.data_dir / "store" / "secondary")

    @property
    def trusted_keys_dir(self) -> Path:
        return self.trust_dir or self.data_dir / "trust"

    @property
    def job_key_path(self) -> Path:
        return self.job_key_file or self.data_dir / "secrets" / "job.key"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def given_admin_password(self) -> str | None:
        """The admin password set by the operator (the setting, else the file), if any."""
        if self.admin_password is not None:
            return self.admin_password
        if self.admin_password_file is not None:
            return self.admin_password_file.read_text().strip()
        return None

    def allowed_network_objects(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Parsed outbound allow-list; empty means every address may be contacted."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)


_PATH_FIELDS = {"data_dir", "cert_file", "key_file", "admin_password_file", "import_dir",
                "trust_dir", "job_key_file"}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file, then explicit overrides (flags) on top.

    The TOML file has top-level keys named like the fields of :class:`Settings` and a
    ``[cluster]`` table for :class:`ClusterIdentity`. Unknown keys are an error, so a
    typo in an operator's file is not silently ignored.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            values = _coerce(tomllib.load(fh), base=config_file.parent)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    if settings.allowed_networks:
        settings.allowed_network_objects()  # fail early on a malformed network
    return settings


def _coerce(raw: dict[str, Any], *, base: Path) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ValueError(f"unknown setting {key!r} in config file")
        if key == "cluster":
            cluster = dict(value)
            if "nodes" in cluster:
                cluster["nodes"] = tuple(cluster["nodes"])
            out[key] = replace(ClusterIdentity(), **cluster)
        elif key in _PATH_FIELDS:
            out[key] = (base / value) if not Path(value).is_absolute() else Path(value)
        elif key == "ca_files":
            out[key] = tuple(base / v for v in value)
        elif key in ("allowed_networks", "stores"):
            out[key] = tuple(value)
        else:
            out[key] = value
    return out
