"""Runs the ``swdepot`` CLI as a real child process against a test service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service import ADMIN_PASSWORD, RunningService

ESC = "\x1b"


@dataclass
class Cli:
    """``swdepot …`` with the service's URL, CA and password in the environment."""

    svc: RunningService

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SWDEPOT_")}
        return {**base, "SWDEPOT_URL": self.svc.api.base, "SWDEPOT_PASSWORD": ADMIN_PASSWORD,
                "SWDEPOT_CA_FILE": str(self.svc.cert), "SWDEPOT_CONFIG": os.devnull + ".none",
                **extra}

    def __call__(self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(args, env=env if env is not None else self.env(), stdin=stdin,
                       timeout=timeout)


def run_cli(args: Sequence[str], *, env: Mapping[str, str], stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swdepot", *args], input=stdin or "",
                          capture_output=True, text=True, env=dict(env), timeout=timeout,
                          check=False)
