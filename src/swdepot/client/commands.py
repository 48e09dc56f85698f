"""``swdepot package get|show-repository|check-download-progress|delete|upload`` and
``swdepot job show|watch``: ONTAP's ``cluster image package`` commands, over REST.

Each command resolves a :class:`~swdepot.client.connection.Connection`, talks to the
service through :class:`~swdepot.client.rest.SwdepotClient` and reports through
:class:`~swdepot.client.render.Output`. Exit status: 0 success; 1 the service refused
or the job failed (the ONTAP code and message are printed); 2 usage or configuration;
3 the service could not be reached (including TLS verification failures).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swdepot.client.connection import ConfigError, ConnectionFlags, resolve
from swdepot.client.follow import Snapshot, follow
from swdepot.client.render import Output, human_bytes
from swdepot.client.rest import ApiError, SwdepotClient, TransportError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
DELETED = "Package Delete Operation Completed Successfully"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

Handler = Callable[[SwdepotClient, Output, argparse.Namespace], int]


class CommandFailed(Exception):
    """A failure the CLI itself detected (not an ONTAP error), e.g. a sha256 mismatch."""


def run(args: argparse.Namespace) -> int:
    """Resolve the connection, run the handler, map failures to exit codes."""
    out = Output(json_mode=args.json)
    try:
        conn = resolve(ConnectionFlags(args.url, args.user, args.password_file, args.ca_file,
                                       args.insecure, args.config))
    except ConfigError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    if conn.insecure:
        out.err.print("swdepot: warning: TLS verification is off (--insecure)", markup=False)
    try:
        with SwdepotClient(conn) as client:
            return HANDLERS[args.handler](client, out, args)
    except ConfigError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except ApiError as exc:
        _report_api_error(out, exc)
        return EXIT_FAILED
    except CommandFailed as exc:
        if out.json_mode:
            out.json({"error": {"message": str(exc)}})
        out.error(str(exc))
        return EXIT_FAILED
    except TransportError as exc:
        out.error(str(exc))
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        out.error("interrupted; the job goes on in the service (see `swdepot job watch`)")
        return 130


def _report_api_error(out: Output, exc: ApiError) -> None:
    if out.json_mode:
        out.json(exc.to_body())
    out.error(f"{exc.message} (code {exc.code})")


# --- following a job ----------------------------------------------------------------------


def _follow(client: SwdepotClient, out: Output, uuid: str, label: str, *,
            with_progress: bool) -> Snapshot:
    """Follow a job with a progress bar on a terminal, message lines otherwise."""
    last_message = None
    shot: Snapshot | None = None
    with out.transfer(label) as bar:
        for shot in follow(client, uuid, with_progress=with_progress):
            message = shot.job.get("message")
            if shot.bytes_total is not None or shot.bytes_done is not None:
                bar.update(shot.bytes_done, shot.bytes_total, shot.speed)
            if message != last_message and not shot.finished:
                if not out.interactive:
                    out.line(f"{shot.job.get('state')}: {message}")
                elif isinstance(message, str) and "; retrying: " in message:
                    bar.note(message.split("; ", 1)[1])  # the rest is shown by the bar
            last_message = message
    assert shot is not None  # follow yields at least once
    return shot


def _finish(out: Output, shot: Snapshot, success_line: str,
            extra: dict[str, Any] | None = None) -> int:
    """Report the job's outcome; a failure prints the ONTAP code and message."""
    job = shot.job
    if shot.failed:
        error = job.get("error") or {"code": str(job.get("code")), "message": job.get("message")}
        if out.json_mode:
            out.json({"job": job, "error": error, **(extra or {})})
        out.error(f"{error.get('message')} (code {error.get('code')})")
        return EXIT_FAILED
    if out.json_mode:
        out.json({"job": job, **(extra or {})})
    else:
        out.line(success_line)
    return EXIT_OK


# --- package commands ---------------------------------------------------------------------


def _file_name(url: str) -> str:
    """The name the package is shown under while it downloads: the URL's last path
    segment, decoded (the service accepted the URL, so it has one)."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1]) or url


def package_get(client: SwdepotClient, out: Output, args: argparse.Namespace) -> int:
    """POST the download, follow it with a progress bar, optionally check the sha256."""
    expected = args.sha256.lower() if args.sha256 else None
    if expected is not None and not _SHA256.fullmatch(expected):
        raise CommandFailed(f"--sha256 must be 64 hexadecimal digits, not {args.sha256!r}")
    password = _read_password_stdin() if args.password_stdin else None
    uuid = client.start_download(args.package_url, args.username, password)
    file_name = _file_name(args.package_url)
    shot = _follow(client, out, uuid, file_name, with_progress=True)
    if shot.failed:
        return _finish(out, shot, "")
    record = client.package_by_file_name(file_name)
    if expected is not None:
        _check_sha256(client, out, record, expected, file_name)
    lines = ["Package download completed.", "Package processing completed."]
    if record is not None:
        lines.append(f"Version {record['version']} ({record['kind']}, "
                     f"{human_bytes(record['size'])}), sha256 {record['sha256']}")
    return _finish(out, shot, "\n".join(lines), {"package": record})


def _check_sha256(client: SwdepotClient, out: Output, record: dict[str, Any] | None,
                  expected: str, file_name: str) -> None:
    """Keep the package only if it is the one the operator meant (see docs/operations.md)."""
    if record is None:
        raise CommandFailed(f"{file_name} was stored but is not listed as a package (firmware "
                            "files are not), so its sha256 cannot be checked")
    if record["sha256"] == expected:
        return
    uuid = client.delete_package(record["version"])
    deleted = _follow(client, out, uuid, f"delete {record['version']}", with_progress=False)
    outcome = "it was deleted" if not deleted.failed else (
        f"deleting it failed: {deleted.job.get('message')}")
    raise CommandFailed(f"sha256 mismatch for {file_name}: expected {expected}, the "
                        f"published package has {record['sha256']}; {outcome}")


def _read_password_stdin() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password for the package server: ")
    return sys.stdin.readline().rstrip("\r\n")


def show_repository(client: SwdepotClient, out: Output, _args: argparse.Namespace) -> int:
    records = client.packages()
    if out.json_mode:
        out.json({"records": records, "num_records": len(records)})
        return EXIT_OK
    rows = [(r.get("version"), r.get("create_time"), r.get("kind"), human_bytes(r.get("size")),
             r.get("signer"), r.get("file_name")) for r in records]
    out.table(("Package Version", "Create Time", "Kind", "Size", "Signer", "File Name"), rows,
              empty="There are no packages in the repository.")
    return EXIT_OK


def check_download_progress(client: SwdepotClient, out: Output,
                            _args: argparse.Namespace) -> int:
    status = client.download_status()
    if out.json_mode:
        out.json(status)
        return EXIT_OK
    done, total = status.get("bytes_done"), status.get("bytes_total")
    percent = f" ({100 * done / total:.0f}%)" if done is not None and total else ""
    speed = status.get("speed")
    out.fields([
        ("Download Status", status.get("state")),
        ("Message", status.get("message")),
        ("Code", status.get("code")),
        ("Transferred", f"{human_bytes(done)} of {human_bytes(total)}{percent}"
         if done is not None else None),
        ("Speed", f"{human_bytes(speed)}/s" if speed is not None else None),
        ("Job", (status.get("job") or {}).get("uuid")),
    ])
    return EXIT_OK


def package_delete(client: SwdepotClient, out: Output, args: argparse.Namespace) -> int:
    uuid = client.delete_package(args.version)
    shot = _follow(client, out, uuid, f"delete {args.version}", with_progress=False)
    return _finish(out, shot, DELETED)


def package_upload(client: SwdepotClient, out: Output, args: argparse.Namespace) -> int:
    """Stream the file (multipart ``file``), then follow the job that processes it."""
    path: Path = args.file
    if not path.is_file():
        raise CommandFailed(f"{path} is not a file")
    total = path.stat().st_size
    with out.transfer(f"upload {path.name}") as bar:
        uuid = client.upload(path, lambda sent: bar.update(sent, total))
    shot = _follow(client, out, uuid, path.name, with_progress=False)
    if shot.failed:
        return _finish(out, shot, "")
    record = client.package_by_file_name(path.name)
    line = "Package upload completed."
    if record is not None:
        line += f" Version {record['version']}, sha256 {record['sha256']}"
    return _finish(out, shot, line, {"package": record})


# --- job commands -------------------------------------------------------------------------


def job_show(client: SwdepotClient, out: Output, args: argparse.Namespace) -> int:
    job = client.job(args.uuid)
    if out.json_mode:
        out.json(job)
        return EXIT_OK
    out.fields(_job_fields(job))
    return EXIT_OK


def job_watch(client: SwdepotClient, out: Output, args: argparse.Namespace) -> int:
    shot = _follow(client, out, args.uuid, args.uuid[:8], with_progress=True)
    if not out.json_mode and not shot.failed:
        out.fields(_job_fields(shot.job))
        return EXIT_OK
    return _finish(out, shot, "")


def _job_fields(job: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("UUID", job.get("uuid")),
        ("Description", job.get("description")),
        ("State", job.get("state")),
        ("Message", job.get("message")),
        ("Code", job.get("code")),
        ("Start Time", job.get("start_time")),
        ("End Time", job.get("end_time")),
        ("Node", (job.get("node") or {}).get("name")),
    ]


HANDLERS: dict[str, Handler] = {
    "package_get": package_get,
    "show_repository": show_repository,
    "check_download_progress": check_download_progress,
    "package_delete": package_delete,
    "package_upload": package_upload,
    "job_show": job_show,
    "job_watch": job_watch,
}
