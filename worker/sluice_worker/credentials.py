"""Where a pipeline's Secrets reach the worker (one mounted folder per side) and the clients' TLS and login settings.

The spec names Secrets and keys only; the operator mounts them as files under `CREDENTIALS_DIR/<side>/`, and
everything that connects (consumer, dead-letter producer, replay-dlq, the operator's lag reader, the sink) builds
its settings from the same values, read from those files or, in the operator, from the Secrets themselves."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from .model import Login, PipelineSpec, SourceSpec, TlsSpec

CREDENTIALS_DIR: Final = Path("/etc/sluice/credentials")
CA_FILE: Final = "ca.crt"
CERTIFICATE_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"
USERNAME_FILE: Final = "username"
PASSWORD_FILE: Final = "password"

Side = Literal["source", "sink", "registry"]


@dataclass(frozen=True)
class SecretItem:
    """One key of one Secret, the file it becomes in the worker, and the spec field that names it."""

    secret: str
    key: str
    side: Side
    file: str
    field: str  # e.g. spec.source.auth.passwordKey, for messages

    @property
    def path(self) -> str:
        """Relative to CREDENTIALS_DIR: `source/ca.crt`."""
        return f"{self.side}/{self.file}"


def _side_items(side: Side, tls: TlsSpec | None, auth: Login | None, base: str = "") -> list[SecretItem]:
    base = base or f"spec.{side}"
    items = []
    if tls is not None and tls.ca is not None:
        items.append(SecretItem(tls.ca.secret, tls.ca.key, side, CA_FILE, f"{base}.tls.ca.key"))
    if tls is not None and (cert := tls.client_certificate) is not None:
        items.append(SecretItem(cert.secret, cert.certificate, side, CERTIFICATE_FILE,
                                f"{base}.tls.clientCertificate.certificate"))  # fmt: skip
        items.append(SecretItem(cert.secret, cert.key, side, KEY_FILE, f"{base}.tls.clientCertificate.key"))
    if auth is not None:
        items.append(SecretItem(auth.secret, auth.username_key, side, USERNAME_FILE, f"{base}.auth.usernameKey"))
        items.append(SecretItem(auth.secret, auth.password_key, side, PASSWORD_FILE, f"{base}.auth.passwordKey"))
    return items


def secret_items(spec: PipelineSpec) -> list[SecretItem]:
    """Every Secret key the pipeline's tls and auth fields name: source, sink, then the schema registry's."""
    registry = spec.source.schema_registry
    return [
        *_side_items("source", spec.source.tls, spec.source.auth),
        *_side_items("sink", spec.sink.tls, spec.sink.auth),
        *_side_items("registry", None, registry.auth if registry else None, "spec.source.schemaRegistry"),
    ]


def read_side(directory: Path, side: Side) -> dict[str, str]:
    """The mounted values of one side, by file name (what is not mounted is absent)."""
    folder = directory / side
    if not folder.is_dir():
        return {}
    return {
        path.name: path.read_text() for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")
    }


class CredentialsMissing(RuntimeError):
    """The spec names a Secret key that is not where the worker expects it (not mounted, or not readable)."""


def _need(values: Mapping[str, str], file: str, what: str) -> str:
    if file not in values:
        raise CredentialsMissing(f"{what}: no {file!r} among the mounted credentials (is the Secret mounted?)")
    return values[file]


def kafka_security(source: SourceSpec, values: Mapping[str, str]) -> dict[str, str]:
    """librdkafka's TLS and SASL settings for `source.tls`/`source.auth`, from the side's values by file name
    (PEM text, not paths: the operator has no files). Empty for the older, environment-variable style."""
    config: dict[str, str] = {}
    if source.tls is None and source.auth is None:
        return config
    config["security.protocol"] = source.protocol
    if (tls := source.tls) is not None:
        if tls.ca is not None:
            config["ssl.ca.pem"] = _need(values, CA_FILE, "spec.source.tls.ca")
        if tls.client_certificate is not None:
            config["ssl.certificate.pem"] = _need(values, CERTIFICATE_FILE, "spec.source.tls.clientCertificate")
            config["ssl.key.pem"] = _need(values, KEY_FILE, "spec.source.tls.clientCertificate")
        config["ssl.endpoint.identification.algorithm"] = "https" if tls.verify_hostname else "none"
    if (auth := source.auth) is not None:
        config["sasl.mechanism"] = auth.mechanism
        username = _need(values, USERNAME_FILE, "spec.source.auth").strip()
        password = _need(values, PASSWORD_FILE, "spec.source.auth").rstrip("\n")
        if auth.mechanism == "OAUTHBEARER":  # librdkafka asks the token endpoint itself, and again before expiry
            assert auth.token_endpoint is not None, "validated: OAUTHBEARER has a token endpoint"
            config["sasl.oauthbearer.method"] = "oidc"
            config["sasl.oauthbearer.token.endpoint.url"] = auth.token_endpoint
            config["sasl.oauthbearer.client.id"], config["sasl.oauthbearer.client.secret"] = username, password
            if auth.scope is not None:
                config["sasl.oauthbearer.scope"] = auth.scope
        else:
            config["sasl.username"], config["sasl.password"] = username, password
    return config


def cassandra_ssl_context(tls: TlsSpec, directory: Path) -> ssl.SSLContext:
    """The TLS context of the sink's connections, from the mounted sink files: the CA (else the system's),
    the client certificate for mutual TLS, hostname checks as asked (the driver then checks each node's address)."""
    folder = directory / "sink"
    ca = folder / CA_FILE
    if tls.ca is not None and not ca.is_file():
        raise CredentialsMissing(f"spec.sink.tls.ca: no {CA_FILE!r} among the mounted credentials")
    context = ssl.create_default_context(cafile=str(ca) if tls.ca is not None else None)
    context.check_hostname = tls.verify_hostname
    if tls.client_certificate is not None:
        certificate, key = folder / CERTIFICATE_FILE, folder / KEY_FILE
        if not (certificate.is_file() and key.is_file()):
            raise CredentialsMissing("spec.sink.tls.clientCertificate: the certificate or key is not mounted")
        context.load_cert_chain(str(certificate), str(key))
    return context


def cassandra_login(auth: Login, directory: Path) -> tuple[str, str]:
    """The sink's username and password from the mounted sink files."""
    values = read_side(directory, "sink")
    return _need(values, USERNAME_FILE, "spec.sink.auth").strip(), _need(
        values, PASSWORD_FILE, "spec.sink.auth"
    ).rstrip("\n")


def registry_login(directory: Path) -> tuple[str, str]:
    """The schema registry's username and password from the mounted registry files."""
    values = read_side(directory, "registry")
    what = "spec.source.schemaRegistry.auth"
    return _need(values, USERNAME_FILE, what).strip(), _need(values, PASSWORD_FILE, what).rstrip("\n")
