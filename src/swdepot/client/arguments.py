"""The command-line shape of the REST commands, kept apart from their work.

``swdepot serve`` builds the same parser, so this module imports nothing heavy
(no HTTP client, no terminal library): handlers are named here and looked up in
:mod:`swdepot.client.commands` only when one of these commands runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _remote(sub: Any, name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand that talks to a service: connection flags and ``--json`` on every one."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    conn = parser.add_argument_group("connection (flags, then $SWDEPOT_*, then the config file)")
    conn.add_argument("--url", help="service URL (env SWDEPOT_URL; default "
                      "https://127.0.0.1:8443)")
    conn.add_argument("--user", help="service user (env SWDEPOT_USER; default admin)")
    conn.add_argument("--password-file", type=Path,
                      help="file holding the service password (else env SWDEPOT_PASSWORD, the "
                      "config file, or a prompt on a terminal)")
    conn.add_argument("--ca-file", type=Path, help="CA or certificate to verify the service "
                      "with (env SWDEPOT_CA_FILE), e.g. DATA_DIR/tls/server.crt")
    conn.add_argument("--insecure", action="store_true",
                      help="do not verify the service's TLS certificate")
    conn.add_argument("--config", type=Path, help="client config file (TOML; default "
                      "$SWDEPOT_CONFIG or ~/.config/swdepot/client.toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON document, for "
                        "scripts")
    parser.set_defaults(handler=handler)
    return parser


def register(root: Any, package: Any) -> None:
    """Add the REST commands to the ``swdepot`` parser (``package`` is its subparsers)."""
    get = _remote(package, "get", "package_get", "download a package into the repository "
                  "(cluster image package get)")
    get.add_argument("package_url", metavar="URL", help="http(s)://, ftp:// or file:// URL")
    get.add_argument("--username", help="user name for the package server")
    get.add_argument("--password-stdin", action="store_true",
                     help="read the package server's password from stdin")
    get.add_argument("--sha256", metavar="HEX", help="expected sha256 of the package: if the "
                     "published package differs, it is deleted and the command fails")
    _remote(package, "show-repository", "show_repository",
            "list the packages in the repository")
    _remote(package, "check-download-progress", "check_download_progress",
            "show the status of the latest download")
    delete = _remote(package, "delete", "package_delete", "delete a package version")
    delete.add_argument("version", help="package version, e.g. 9.16.1")
    upload = _remote(package, "upload", "package_upload", "upload a local package file")
    upload.add_argument("file", type=Path, help="package file (.tgz)")

    job = root.add_parser("job", help="show and follow asynchronous jobs")
    jsub = job.add_subparsers(dest="job_command", required=True)
    show = _remote(jsub, "show", "job_show", "show one job")
    show.add_argument("uuid")
    watch = _remote(jsub, "watch", "job_watch", "follow a job until it ends")
    watch.add_argument("uuid")
