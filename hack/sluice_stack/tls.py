"""The secured stack's certificates, made with openssl at stack-up: a CA, a server and a client certificate."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

# The servers listen on loopback only: the certificate names the addresses the clients dial.
SERVER_NAMES = "subjectAltName=DNS:localhost,IP:127.0.0.1"
DAYS = "30"
# RSA: every PEM reader here takes it (Kafka's PEM keystore, Cassandra's PEM factory, OpenSSL, Python).
KEY_ALGORITHM = ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _sign(folder: Path, name: str, subject: str, extension: str) -> None:
    """`name.key` (PKCS#8, unencrypted: what Kafka's PEM keystore and librdkafka read) and `name.crt`, signed by
    the CA; `name.pem` holds both, for servers that take one file."""
    _openssl("genpkey", *KEY_ALGORITHM, "-out", f"{name}.key", cwd=folder)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder)
    (folder / f"{name}.ext").write_text(extension + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", DAYS, "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder,
    )  # fmt: skip
    (folder / f"{name}.pem").write_text((folder / f"{name}.key").read_text() + (folder / f"{name}.crt").read_text())


def make_certificates(folder: Path) -> Path:
    """`folder/` with ca.crt, server.{key,crt,pem} and client.{key,crt} (kept if already made); returns it.
    A second, unrelated CA (`other-ca.crt`) lets tests check that a wrong CA is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:  # Kafka's and Cassandra's start-ups may ask at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "client.pem").exists():
            _make(folder)
    return folder


def _make(folder: Path) -> None:
    for ca in ("ca", "other-ca"):
        _openssl("genpkey", *KEY_ALGORITHM, "-out", f"{ca}.key", cwd=folder)
        _openssl(
            "req", "-x509", "-new", "-key", f"{ca}.key", "-subj", f"/CN=sluice local {ca}", "-days", DAYS,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", f"{ca}.crt", cwd=folder,
        )  # fmt: skip
    _sign(folder, "server", "/CN=localhost", f"{SERVER_NAMES}\nextendedKeyUsage=serverAuth")
    _sign(folder, "client", "/CN=sluice-worker", "extendedKeyUsage=clientAuth")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
