"""The Secrets a pipeline's tls and auth fields name, read by the operator: checked before workers are rolled
onto them, versioned so that a rotation rolls the workers, and the source's values for the lag reader.

Values stay in memory: never in a manifest, a status, an event or a log line; messages name Secrets and keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sluice_worker.credentials import SecretItem, Side, secret_items
from sluice_worker.model import PipelineSpec

from .api import Obj, Resource, secret_name
from .kube import ApiError, Kube

SECRETS: Final = Resource("v1", "secrets")
REASON: Final = "CredentialsMissing"  # the Ready condition's reason while a Secret or key cannot be read
BROKERS_OVERRIDE: Final = "SLUICE_KAFKA_BOOTSTRAP_SERVERS"  # the workers' WorkerSettings.kafka_bootstrap_servers


class CredentialsProblem(Exception):
    """A Secret or key the spec names cannot be read; the message names it and the field that refers to it."""


@dataclass(frozen=True)
class Credentials:
    """The values of a pipeline's Secret keys, by side and file name, and a version of the Secrets read."""

    values: Mapping[Side, Mapping[str, str]] = field(default_factory=dict)
    version: str | None = None  # None: the pipeline names no Secret

    def side(self, side: Side) -> Mapping[str, str]:
        return self.values.get(side, {})


def _read(kube: Kube, namespace: str, item: SecretItem, secrets: dict[str, Obj]) -> str:
    secret_field = item.field.rsplit(".", 1)[0] + ".secret"
    if item.secret not in secrets:
        try:
            found = kube.get(SECRETS, namespace, item.secret)
        except ApiError as error:
            if error.status == 403:
                raise CredentialsProblem(
                    f"the operator may not read Secret {item.secret!r} ({secret_field}): its role needs "
                    "`get` on secrets (see the chart's rbac)"
                ) from None
            raise
        if found is None:
            raise CredentialsProblem(f"Secret {item.secret!r} ({secret_field}) not found in namespace {namespace}")
        secrets[item.secret] = found
    data = secrets[item.secret].get("data") or {}
    if item.key not in data:
        raise CredentialsProblem(f"Secret {item.secret!r} has no key {item.key!r} ({item.field})")
    try:
        return base64.b64decode(data[item.key], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsProblem(f"Secret {item.secret!r} key {item.key!r} ({item.field}) is not UTF-8 text") from None


def resolve(
    kube: Kube, namespace: str, spec: PipelineSpec, sides: tuple[Side, ...] = ("source", "sink", "registry")
) -> Credentials:
    """Reads every Secret key of `sides` the spec names (one GET per Secret). Raises CredentialsProblem."""
    items = [item for item in secret_items(spec) if item.side in sides]
    if not items:
        return Credentials()
    secrets: dict[str, Obj] = {}
    values: dict[Side, dict[str, str]] = {}
    for item in items:
        values.setdefault(item.side, {})[item.file] = _read(kube, namespace, item, secrets)
    stamps = sorted(
        f"{name}/{obj['metadata'].get('uid')}/{obj['metadata'].get('resourceVersion')}" for name, obj in secrets.items()
    )
    return Credentials(values, hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16])


def brokers_override(kube: Kube, namespace: str, pipeline: str) -> str | None:
    """SLUICE_KAFKA_BOOTSTRAP_SERVERS of the pipeline's optional Secret `<pipeline>-credentials`, which the workers
    get as environment and which overrides spec.source.bootstrapServers for them; None without one (no Secret, no
    such key, not text, or a role that may not read it). Raises ApiError on other API failures."""
    try:
        found = kube.get(SECRETS, namespace, secret_name(pipeline))
    except ApiError as error:
        if error.status == 403:
            return None
        raise
    encoded = ((found or {}).get("data") or {}).get(BROKERS_OVERRIDE)
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None
