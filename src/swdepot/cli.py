"""The ``swdepot`` command: ``serve`` the API, ``package`` tools, and a REST client
(``package get|show-repository|…``, ``job show|watch``) for operators.

Every parser is a :class:`Parser`: no prefix abbreviations (``--password`` is not taken
for ``--password-file``), and an error never repeats a value it was given, which may be
a password typed in the wrong place."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from swdepot.auth import ADMIN, READONLY
from swdepot.client.arguments import register as register_client_commands

ENV_PASSWORD = "SWDEPOT_ADMIN_PASSWORD"
ENV_DATABASE = "SWDEPOT_DATABASE"
ENV_USER_PASSWORD = "SWDEPOT_USER_PASSWORD"
ROLES = (ADMIN, READONLY)
DESCRIPTION = ("swdepot: the software package download service of an ONTAP cluster, "
               "with ONTAP's REST API. Run the service (serve), manage its users (user), "
               "build packages and talk to a running service (package, job), check the "
               "stored copies (repository).")


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors leave out the values they were given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            shown = " ".join(e.split("=", 1)[0] if e.startswith("-") else "…" for e in extras)
            self.error(f"unrecognized arguments: {shown}")
        return parsed


def _parser() -> argparse.ArgumentParser:
    from swdepot import __version__
    from swdepot.config import Settings

    defaults = Settings()
    parser = Parser(prog="swdepot", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"swdepot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ONTAP-compatible REST service",
                           description="Run the ONTAP-compatible REST service. Every option "
                           "overrides the settings file (--config), which overrides the "
                           "defaults shown.")
    serve.add_argument("--config", type=Path, help="TOML settings file (default: none)")
    serve.add_argument("--host", help=f"address to listen on (default {defaults.host})")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {defaults.port})")
    serve.add_argument("--data-dir", type=Path, help="where the database and packages live "
                       f"(default ./{defaults.data_dir})")
    serve.add_argument("--database", help="postgresql://USER@HOST:PORT/DBNAME for cluster "
                       "mode (also SWDEPOT_DATABASE; default: SQLite in the data directory)")
    serve.add_argument("--store", action="append", metavar="URL",
                       help="where packages are kept, given once or twice (primary, then "
                       "secondary copies): file:///PATH or "
                       "s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT, credentials from "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_REGION (default: "
                       "DATA_DIR/store/primary and DATA_DIR/store/secondary)")
    serve.add_argument("--node-name", help="which cluster node this process is (default: the "
                       "first configured node); processes sharing a data directory need "
                       "different names")
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM; default: a "
                       "self-signed one made in DATA_DIR/tls)")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM; default: with --cert's "
                       "self-signed one)")
    serve.add_argument("--insecure-http", action="store_true",
                       help="serve plain HTTP (default: HTTPS)")
    serve.add_argument("--admin-password-file", type=Path,
                       help=f"file holding the admin password (else ${ENV_PASSWORD}; "
                       "default: one generated at the first start and printed once)")
    serve.add_argument("--import-dir", type=Path, help="existing directory FILE URLs may read "
                       "from (default: none, FILE URLs are refused)")
    serve.add_argument("--ca-file", type=Path, action="append", default=None,
                       help="extra CA certificate to trust for HTTPS downloads (repeatable; "
                       "default: the system's CAs only)")
    serve.add_argument("--allow-network", action="append", default=None,
                       help="outbound allow-list entry, e.g. 127.0.0.1/32 (repeatable; "
                       "default: any address)")
    serve.add_argument("--require-signatures", action="store_true", default=None,
                       help="accept only packages signed by a trusted key (default: "
                       "unsigned packages too)")
    serve.add_argument("--log-level", default="info", type=str.lower,
                       choices=("debug", "info", "warning", "error", "critical"),
                       help="least severe level logged (default info)")
    serve.add_argument("--log-format", choices=("json", "text"), default=None,
                       help="log lines on stderr (default: text on a terminal, JSON lines "
                       "otherwise)")

    user = sub.add_parser("user", help="manage API users (stored as slow password hashes)")
    usub = user.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="create a user or change its password and role")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default=READONLY,
                     help="admin may change things; readonly may only read (default)")
    add.add_argument("--password-file", type=Path,
                     help=f"file holding the password (else ${ENV_USER_PASSWORD}, else a prompt)")
    remove = usub.add_parser("delete", help="remove a user")
    remove.add_argument("name")
    usub.add_parser("list", help="list users and their roles")
    for command in (add, remove, usub.choices["list"]):
        command.add_argument("--config", type=Path, help="TOML settings file")
        command.add_argument("--data-dir", type=Path, help="the service's data directory")
        command.add_argument("--database", help="the service's PostgreSQL URL, if it has one "
                             "(also SWDEPOT_DATABASE)")

    package = sub.add_parser("package", help="build, sign, download and manage packages")
    psub = package.add_subparsers(dest="package_command", required=True)
    build = psub.add_parser("build", help="build a package from a directory")
    build.add_argument("source", type=Path, help="directory with the package contents")
    build.add_argument("--version", required=True, help="package version, e.g. 9.16.1")
    build.add_argument("--product", default="ONTAP")
    build.add_argument("--sign", type=Path, metavar="KEY", help="Ed25519 private key (PEM)")
    build.add_argument("-o", "--output", type=Path, required=True, help="output .tgz file")
    keygen = psub.add_parser("keygen", help="create an Ed25519 signing key pair")
    keygen.add_argument("name", type=Path, help="writes NAME.key (private) and NAME.pub")

    repository = sub.add_parser("repository", help="check the stored packages")
    rsub = repository.add_subparsers(dest="repository_command", required=True)
    verify = rsub.add_parser("verify", help="check both copies of every package against its "
                             "recorded sha256; exit status 1 if anything is wrong")
    verify.add_argument("--config", type=Path, help="TOML settings file")
    verify.add_argument("--data-dir", type=Path, help="where the database and packages live")
    verify.add_argument("--database", help="the service's PostgreSQL URL, if it has one "
                        "(also SWDEPOT_DATABASE)")
    verify.add_argument("--store", action="append", metavar="URL",
                        help="the service's --store URLs, if it has any (same order)")
    verify.add_argument("--repair", action="store_true",
                        help="rewrite bad or missing copies from a good one; remove orphans")
    register_client_commands(sub, psub)
    return parser


def main(argv: Sequence[str] | None = None, *,
         serve: Callable[..., None] | None = None) -> int:
    """``serve``: what runs ``swdepot serve`` (default :func:`swdepot.server.run`, with its
    arguments; bench/servers.py passes others)."""
    args = _parser().parse_args(argv)
    if getattr(args, "handler", None) is not None:
        from swdepot.client.commands import run

        return run(args)
    if args.command == "serve":
        return _serve(args, serve)
    if args.command == "repository":
        return _repository(args)
    if args.command == "user":
        return _user(args)
    return _package(args)


def _serve(args: argparse.Namespace, serve: Callable[..., None] | None) -> int:
    import os

    from swdepot import logs
    from swdepot.auth import hash_password_soon
    from swdepot.config import load_settings

    fmt = args.log_format or ("text" if sys.stderr.isatty() else "json")
    logs.configure(args.log_level, fmt)
    settings = load_settings(
        args.config,
        host=args.host, port=args.port, data_dir=args.data_dir, cert_file=args.cert,
        key_file=args.key, tls=False if args.insecure_http else None,
        admin_password=os.environ.get(ENV_PASSWORD) or None,
        admin_password_file=args.admin_password_file, import_dir=args.import_dir,
        ca_files=tuple(args.ca_file) if args.ca_file else None,
        allowed_networks=tuple(args.allow_network) if args.allow_network else None,
        require_signatures=args.require_signatures, node_name=args.node_name,
        database=_database(args), stores=tuple(args.store) if args.store else None,
    )
    if settings.database is not None and settings.node_name is None:
        print("swdepot: --node-name is required with --database (cluster mode): every node "
              "of a cluster has a name of its own", file=sys.stderr)
        return 2
    if settings.import_dir is not None and not settings.import_dir.is_dir():
        print(f"swdepot: the import directory {settings.import_dir} does not exist",
              file=sys.stderr)
        return 2
    try:
        given = settings.given_admin_password()
    except OSError:
        given = None  # the service reports the unreadable file when it reads it
    # the slow hash runs on the other core while the service's modules import
    prehashed = hash_password_soon(given) if given is not None else None
    from swdepot.nodelock import NodeBusy
    from swdepot.nodes import NodeNameTaken
    from swdepot.server import run

    try:
        (serve or run)(settings, log_level=args.log_level, prehashed=prehashed)
    except (NodeBusy, NodeNameTaken) as exc:
        print(f"swdepot: {exc}", file=sys.stderr)
        return 1
    except _unusable_setup() as exc:
        print(f"swdepot: {exc}", file=sys.stderr)
        return 2
    return 0


def _unusable_setup() -> tuple[type[Exception], ...]:
    """What start-up refuses with one line and exit status 2: a store or database URL
    of no known shape, or a store or database that cannot be reached."""
    from swdepot.persistence.postgres import DatabaseUnreachable
    from swdepot.persistence.stores import BadDatabaseUrl
    from swdepot.repository.placement import StoreUnreachable
    from swdepot.repository.s3 import BadStoreUrl

    return (BadStoreUrl, BadDatabaseUrl, StoreUnreachable, DatabaseUnreachable)


def _database(args: argparse.Namespace) -> str | None:
    """``--database``, else ``SWDEPOT_DATABASE``, else None (the settings file's, or SQLite)."""
    import os

    return getattr(args, "database", None) or os.environ.get(ENV_DATABASE) or None


def _user(args: argparse.Namespace) -> int:
    """Users live in the service's database, so a running service sees changes at once
    (a changed password or role after its five-minute credential cache)."""
    import getpass
    import os

    from swdepot.auth import hash_password
    from swdepot.config import load_settings
    from swdepot.persistence.stores import open_stores

    settings = load_settings(args.config, data_dir=args.data_dir, database=_database(args))
    stores = open_stores(settings)
    try:
        users = stores.users
        if args.user_command == "list":
            for name, role in users.all():
                print(f"{name}\t{role}")
            return 0
        if args.user_command == "delete":
            if args.name == settings.admin_user:
                print(f"swdepot: {args.name!r} is the configured admin user", file=sys.stderr)
                return 1
            if not users.delete(args.name):
                print(f"swdepot: no user {args.name!r}", file=sys.stderr)
                return 1
            return 0
        if args.password_file is not None:
            password = args.password_file.read_text().strip()
        elif os.environ.get(ENV_USER_PASSWORD):
            password = os.environ[ENV_USER_PASSWORD]
        elif sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.name}: ")
        else:
            password = ""
        if not password:
            print(f"swdepot: no password given (--password-file, ${ENV_USER_PASSWORD} or a "
                  "terminal prompt)", file=sys.stderr)
            return 1
        users.put(args.name, hash_password(password), args.role)
        print(f"user {args.name!r} stored with role {args.role}")
        return 0
    finally:
        stores.close()


def _package(args: argparse.Namespace) -> int:
    from swdepot.packages.build import build_package, generate_keypair

    if args.package_command == "keygen":
        private, public = args.name.with_suffix(".key"), args.name.with_suffix(".pub")
        generate_keypair(private, public)
        print(f"private key: {private}\npublic key:  {public} (install it in the trust "
              "directory of the service)")
        return 0
    try:
        out = build_package(args.source, args.output, version=args.version,
                            product=args.product, signing_key=args.sign)
    except (ValueError, OSError) as exc:
        print(f"swdepot: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _repository(args: argparse.Namespace) -> int:
    from swdepot.config import load_settings
    from swdepot.persistence.stores import open_stores
    from swdepot.service import open_repository

    settings = load_settings(args.config, data_dir=args.data_dir, database=_database(args),
                             stores=tuple(args.store) if args.store else None)
    if settings.database is None and not settings.database_path.is_file():
        print(f"swdepot: no repository at {settings.data_dir}", file=sys.stderr)
        return 2
    stores = open_stores(settings)
    try:
        report = open_repository(settings, stores.catalog).verify(repair=args.repair)
    finally:
        stores.close()
    for damage in report.damaged:
        fix = f"repaired from {damage.repaired_from}" if damage.repaired_from else "NOT repaired"
        print(f"{damage.store}: {damage.problem} copy of {damage.file_name}: {fix}")
    for name in report.lost:
        print(f"lost: {name} has no intact copy left")
    for store, key in report.orphans:
        print(f"{store}: orphan {key} ({'removed' if report.orphans_removed else 'kept'})")
    verdict = "ok" if report.healthy else "PROBLEMS"
    print(f"{verdict}: {report.packages} packages checked")
    return 0 if report.healthy else 1
