"""Where the CLI connects and as whom: flags, then environment, then a config file.

The password of the service account is deliberately not a command-line value (it
would show in ``ps`` and shell history): it comes from ``--password-file``,
``$SWDEPOT_PASSWORD``, the config file, or a prompt on a terminal.
"""

from __future__ import annotations

import getpass
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "https://127.0.0.1:8443"
DEFAULT_USER = "admin"
ENV_URL = "SWDEPOT_URL"
ENV_USER = "SWDEPOT_USER"
ENV_PASSWORD = "SWDEPOT_PASSWORD"
ENV_CA_FILE = "SWDEPOT_CA_FILE"
ENV_CONFIG = "SWDEPOT_CONFIG"
CONFIG_KEYS = frozenset({"url", "user", "password", "ca_file", "insecure"})


class ConfigError(Exception):
    """The connection settings are incomplete or malformed (a usage error)."""


@dataclass(frozen=True)
class Connection:
    """Everything needed to reach one swdepot service."""

    url: str
    user: str
    password: str
    ca_file: Path | None = None
    insecure: bool = False

    def __repr__(self) -> str:  # never show the password in tracebacks
        return (f"Connection(url={self.url!r}, user={self.user!r}, password=***, "
                f"ca_file={self.ca_file!r}, insecure={self.insecure!r})")


@dataclass(frozen=True)
class ConnectionFlags:
    """What the command line said (``None``: not given)."""

    url: str | None = None
    user: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    config: Path | None = None


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$SWDEPOT_CONFIG``, else ``$XDG_CONFIG_HOME/swdepot/client.toml``."""
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "swdepot" / "client.toml"


def load_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """The config file's keys; an unknown key is an error so typos do not go unnoticed."""
    if not path.is_file():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    unknown = set(values) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {path}; "
                          f"known: {sorted(CONFIG_KEYS)}")
    if "ca_file" in values and not Path(values["ca_file"]).is_absolute():
        values["ca_file"] = str(path.parent / values["ca_file"])
    return values


def resolve(flags: ConnectionFlags, env: Mapping[str, str] | None = None,
            *, prompt: bool | None = None) -> Connection:
    """Merge flags over environment over config file; prompt for a missing password.

    ``prompt`` defaults to "stdin is a terminal", so scripts fail fast instead of hanging.
    """
    env = os.environ if env is None else env
    config = load_config_file(flags.config or default_config_path(env),
                              required=flags.config is not None)
    url = flags.url or env.get(ENV_URL) or config.get("url") or DEFAULT_URL
    user = flags.user or env.get(ENV_USER) or config.get("user") or DEFAULT_USER
    ca = flags.ca_file or env.get(ENV_CA_FILE) or config.get("ca_file")
    insecure = flags.insecure or bool(config.get("insecure", False))
    password = _password(flags, env, config, user, url,
                         sys.stdin.isatty() if prompt is None else prompt)
    if ca is not None and not Path(ca).is_file():
        raise ConfigError(f"CA file {ca} does not exist")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"service URL must start with https:// or http://, not {url!r}")
    return Connection(url.rstrip("/"), user, password, Path(ca) if ca else None, insecure)


def _password(flags: ConnectionFlags, env: Mapping[str, str], config: dict[str, Any],
              user: str, url: str, prompt: bool) -> str:
    if flags.password_file is not None:
        try:
            return flags.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            # not the path: it may be a password given in the wrong place
            raise ConfigError(f"cannot read the password file: {exc.strerror}") from None
    if env.get(ENV_PASSWORD):
        return env[ENV_PASSWORD]
    if config.get("password"):
        return str(config["password"])
    if prompt:
        return getpass.getpass(f"Password for {user} at {url}: ")
    raise ConfigError(f"no password for {user}: use --password-file, ${ENV_PASSWORD} or the "
                      "config file")
