"""Secrets a job needs after its process is gone, sealed with a key kept apart from them.

A download taken over by another process (or by the restarted service) must log in to
the file server again, so its password has to outlive the process that was given it.
It is stored in the job's row only sealed: AES-256-GCM (``cryptography``'s AEAD) under a
key that lives in a file of its own (``secrets/job.key`` in the data directory, mode
0600, made on first use; in cluster mode every node is given the same file), bound to
the job it belongs to (the job's uuid is the associated data, so a sealed value copied
into another row does not open). The store wipes it when the job ends.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE_BYTES = 12


class SealBroken(Exception):
    """The sealed value does not open with this key (another key, or tampered with)."""


class Sealer:
    """Seals and opens short secrets with one key file."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            # imported on first use: OpenSSL's cipher bindings are 7 MB of resident memory
            # a service that never downloads with a password does not need
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(_load_or_make_key(self._key_file))
        return self._aead

    def seal(self, secret: str, bound_to: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, secret.encode(), bound_to.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, bound_to: str) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.b64decode(token, validate=True)
            return self._cipher().decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                          bound_to.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealBroken(str(exc) or "the sealed value does not open") from None


def _load_or_make_key(path: Path) -> bytes:
    """The key in ``path``; made there (exclusively, 0600) if there is none yet."""
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # written whole under a private name, then linked into place: whoever links first
    # wins, and nobody ever reads a half-written key
    draft = path.with_name(f".{path.name}.{os.getpid()}.draft")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process made it first: use that one
    finally:
        draft.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte key")
    return key
