"""The service's own TLS certificate: generated once into the data directory.

ONTAP ships with a self-signed cluster certificate; swdepot does the same unless the
operator passes ``--cert``/``--key``. ECDSA P-256, because its handshake signature
costs a fraction of RSA's on this class of machine.

The pair is made by ``python -m swdepot.tls`` in a process of its own: ``cryptography``
would stay loaded in the service for good (about 10 MB) for one use at first start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

#: Forward-secret AEAD suites only (Mozilla's "intermediate" profile, TLS 1.2 part);
#: TLS 1.3 suites are all modern and not affected by this string.
MODERN_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Modern settings for the API server: TLS 1.2 or newer, forward-secret AEAD ciphers,
    no compression (CRIME) and no renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MODERN_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return context


class SelfSigned:
    """The self-signed pair in ``directory``, being made (first start) or already there.

    Begun before the rest of start-up and awaited after it, the generation (a Python
    start and ``cryptography``'s import: 0.1-0.2 s) runs on the other core while the
    service hashes the admin password and recovers its store.
    """

    def __init__(self, directory: Path, hostnames: list[str]) -> None:
        self.cert, self.key = directory / "server.crt", directory / "server.key"
        self._making: subprocess.Popen[str] | None = None
        if not (self.cert.is_file() and self.key.is_file()):
            self._making = subprocess.Popen(
                [sys.executable, "-m", "swdepot.tls", str(directory), *hostnames],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> tuple[Path, Path]:
        """(cert, key) paths once both exist; RuntimeError if they could not be made."""
        if self._making is not None:
            _, errors = self._making.communicate()
            if self._making.returncode != 0:
                raise RuntimeError(f"could not create the TLS certificate: {errors.strip()}")
        return self.cert, self.key


def ensure_self_signed(directory: Path, hostnames: list[str]) -> tuple[Path, Path]:
    """Return (cert, key) paths, creating a self-signed pair on first use."""
    return SelfSigned(directory, hostnames).wait()


def _generate(directory: Path, hostnames: list[str]) -> None:
    """Write a new self-signed pair (``server.crt``, ``server.key``) into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "server.crt", directory / "server.key"
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([*hostnames, "localhost", socket.gethostname()]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swdepot")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    _generate(Path(sys.argv[1]), sys.argv[2:])
