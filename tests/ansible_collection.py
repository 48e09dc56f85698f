"""Install the Ansible ``netapp.ontap`` collection into the venv, from PyPI only.

The collection is published inside the ``ansible`` package (about 490 MB installed, every
collection there is). Ansible Galaxy is not reachable here, so this takes the one wheel
with ``pip download --no-deps`` (pip's cache makes repeats cheap) and extracts only
``ansible_collections/netapp/ontap/`` (about 4 MB) into ``<venv>/ansible-collections``.
Modules then run with that directory on ``PYTHONPATH`` (``python -m``) or
``ANSIBLE_COLLECTIONS_PATH`` (``ansible-playbook``).

Run as a script by ``.ci/run``; the client tests call :func:`ensure_collection` too, so
the README's plain test command also works on a fresh machine that can reach PyPI.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# ansible 12.3.0 bundles netapp.ontap 23.2.0 (the version clients.md recorded); its REST
# code paths are unchanged up to upstream 23.6.0.
ANSIBLE_RELEASE = "12.3.0"
COLLECTION_VERSION = "23.2.0"
PREFIX = "ansible_collections/netapp/ontap/"


def collections_root(prefix: Path | None = None) -> Path:
    """The directory that holds ``ansible_collections/`` (inside the running venv)."""
    return (prefix or Path(sys.prefix)) / "ansible-collections"


def installed_version(root: Path) -> str | None:
    manifest = root / PREFIX / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["collection_info"]["version"]


def ensure_collection(root: Path | None = None) -> Path:
    """Install the pinned collection unless it is already there; returns ``root``."""
    root = root or collections_root()
    if installed_version(root) == COLLECTION_VERSION:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # parallel test workers install it once: the others wait, then find it there
    with open(root.parent / ".ansible-collections.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(root) != COLLECTION_VERSION:
            _install(root)
    return root


def _install(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ansible-wheel-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary", ":all:", "-d", tmp, f"ansible=={ANSIBLE_RELEASE}"],
            check=True, stdout=subprocess.DEVNULL,
        )
        wheel = next(Path(tmp).glob("ansible-*.whl"))
        staging = Path(tempfile.mkdtemp(prefix=".collection-", dir=root.parent))
        try:
            with zipfile.ZipFile(wheel) as archive:
                members = [n for n in archive.namelist() if n.startswith(PREFIX)]
                archive.extractall(staging, members=members)
            if installed_version(staging) != COLLECTION_VERSION:
                raise RuntimeError(f"ansible {ANSIBLE_RELEASE} does not hold netapp.ontap "
                                   f"{COLLECTION_VERSION}")
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    print(f"netapp.ontap {COLLECTION_VERSION} in {ensure_collection()}")
