"""Fixtures that drive swdepot with the real, unmodified ONTAP clients.

* ``ontap`` — NetApp's ``netapp-ontap`` library, connected through a ``HostConnection``
  (``verify=False``: the library's ``verify=<CA path>`` is overridden by the
  ``REQUESTS_CA_BUNDLE`` this machine sets, see clients.md §1.2). Polling runs every
  0.2 s instead of the library's 5 s default, through its own ``poll_interval`` option.
* ``ansible_module`` — a module of the Ansible ``netapp.ontap`` collection, run the way
  ``ansible`` runs it on the target host: ``python -m <module> args.json`` in a child
  process, the JSON result read from its stdout.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collection import ensure_collection
from service import ADMIN_PASSWORD, RunningService

MODULES = "ansible_collections.netapp.ontap.plugins.modules."


@pytest.fixture
def ontap(swdepot: RunningService) -> Iterator[Any]:
    """A ``netapp_ontap.HostConnection`` to the test service, active for the test."""
    from netapp_ontap import HostConnection

    connection = HostConnection("127.0.0.1", port=swdepot.settings.port, username="admin",
                                password=ADMIN_PASSWORD, verify=False, poll_interval=0.2,
                                poll_timeout=30)
    with connection:
        yield connection
    # Let the service stop without waiting for keep-alive connections: close the pool, and
    # collect responses that failed tests' exceptions still reference.
    connection.session.close()
    gc.collect()


@pytest.fixture(scope="session")
def ansible_collections() -> Path:
    """The directory holding ``ansible_collections/netapp/ontap`` (installed on demand)."""
    try:
        return ensure_collection()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        pytest.skip(f"the Ansible netapp.ontap collection could not be installed from PyPI "
                    f"({exc}); run `.venv/bin/python tests/ansible_collection.py`")


AnsibleRunner = Callable[..., dict[str, Any]]


@pytest.fixture
def ansible_module(swdepot: RunningService, ansible_collections: Path, tmp_path: Path,
                   no_proxy_env: None) -> AnsibleRunner:
    """Run a netapp.ontap module against the test service; returns its JSON result.

    The connection options are the ones clients.md §2.2 lists for a self-signed
    ``https://127.0.0.1:PORT``; ``args`` are the task's module options.
    """
    counter = iter(range(1000))

    def run(module: str, *, deadline: float = 150, **args: Any) -> dict[str, Any]:
        options = {
            "hostname": "127.0.0.1", "http_port": swdepot.settings.port, "https": True,
            "validate_certs": False, "use_rest": "always", "username": "admin",
            "password": ADMIN_PASSWORD, **args,
        }
        args_file = tmp_path / f"{module}-{next(counter)}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": options}))
        env = {**os.environ, "PYTHONPATH": str(ansible_collections)}
        done = subprocess.run([sys.executable, "-m", MODULES + module, str(args_file)],
                              capture_output=True, text=True, timeout=deadline, cwd=tmp_path,
                              env=env, check=False)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise AssertionError(f"{module} printed no JSON result (exit {done.returncode}):"
                                 f"\n{done.stdout}\n{done.stderr}") from None
        assert ("failed" in result) == (done.returncode != 0), (done.returncode, result)
        return result

    return run
