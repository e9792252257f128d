"""The operator's settings, from `SLUICE_*` environment variables, and the kopf settings made from them."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

import kopf
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .api import FIELD_MANAGER, MANAGED_BY

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    """The namespace of the operator's pod, or `default` outside a cluster."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _default_identity() -> str:
    """Host and pid: a container restarted in the same pod keeps it, two processes on one machine differ."""
    return f"{socket.gethostname()}_{os.getpid()}"


class OperatorSettings(BaseSettings):
    """What the environment decides about the operator process (every field is `SLUICE_<NAME>`)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated namespaces to watch; empty: all namespaces."
    )
    default_worker_image: str = Field(
        default="sluice-worker:0.1.0", min_length=1, description="Worker image of pipelines without spec.image."
    )
    liveness_host: str = Field(default="0.0.0.0", description="Where /healthz listens.")
    liveness_port: int = Field(default=8081, ge=0, le=65535, description="Port of /healthz; 0 turns it off.")
    leader_election: bool = Field(default=True, description="Act only while holding the Lease.")
    lease_name: str = Field(default="sluice-operator", min_length=1, description="The Lease of the leader.")
    lease_namespace: str = Field(
        default_factory=_own_namespace, description="Namespace of the Lease; default: the operator's own."
    )
    lease_duration_seconds: int = Field(
        default=15, ge=3, description="How long a leader that stopped renewing keeps the Lease."
    )
    identity: str = Field(default_factory=_default_identity, min_length=1, description="Holder name in the Lease.")
    progress_deadline_seconds: int = Field(
        default=600, ge=1, description="progressDeadlineSeconds of the workers; past it a rollout is Degraded."
    )
    resync_seconds: float = Field(default=300.0, ge=0, description="Reconcile every pipeline this often; 0: off.")
    watch_server_timeout_seconds: int = Field(
        default=120, ge=10, description="Watch requests end after this, so a silent watch is always renewed."
    )
    api_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of other API requests.")
    retry_delay_seconds: float = Field(default=5.0, gt=0, description="Delay before a failed reconcile retries.")
    lag_interval_seconds: float = Field(
        default=30.0, ge=0, description="Read each pipeline's lag from Kafka and autoscale it this often; 0: never."
    )
    lag_status_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A minor change of a pipeline's lag or throughput (under 10% of the value shown, and under 100 "
        "messages or 1 message a second) is written to its status at most this often; a larger change, a lag down to "
        "0 or a stopped throughput at the next check. The operator's /metrics has every check's figures.",
    )
    upgrade_crd: bool = Field(
        default=False,
        description="At start, the leader server-side applies the DataPipeline CRD of this operator's own model, so "
        "that upgrading the operator (helm upgrade) upgrades the CRD. Needs get and patch on that one CRD (the chart "
        "grants them with upgradeCRD).",
    )
    ask_workers: bool = Field(
        default=False,
        description="While workers are not ready, ask their /readyz why (pod IP, port 8080) and show it in the "
        "Ready condition. Needs the operator to run in the cluster (the chart turns it on).",
    )
    objects_in_flight: int = Field(
        default=30,
        ge=1,
        description="Objects of each kind (DataPipelines, Deployments, ...) whose watch events are handled at once "
        "(remembered, their pipeline queued); the others' events wait their turn.",
    )
    reconcile_workers: int = Field(
        default=8,
        ge=1,
        description="Pipelines reconciled at once, each by a thread; the others wait in the queue, each once however "
        "many events it had.",
    )
    kafka_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of each Kafka admin request.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(default="text", description="text, or json: one object a line.")

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> OperatorSettings:
        if self.leader_election and self.renew_deadline_seconds <= self.renew_interval_seconds:
            raise ValueError("lease_duration_seconds is too short to renew the Lease in time")
        return self

    @property
    def renew_interval_seconds(self) -> float:
        """How often the leader renews, and a standby retries, the Lease."""
        return self.lease_duration_seconds / 5

    @property
    def renew_deadline_seconds(self) -> float:
        """A leader that could not renew for this long stops acting, before the Lease can expire."""
        return self.lease_duration_seconds * 2 / 3


def help_text() -> str:
    """The environment variables and their defaults, for `--help`."""
    lines = ["environment (SLUICE_<NAME>):"]
    for name, field in OperatorSettings.model_fields.items():
        default = "" if field.default_factory is not None else f" (default: {field.default})"
        lines.append(f"  SLUICE_{name.upper():<30} {field.description}{default}")
    return "\n".join(lines)


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings: bounded watches and workers, no finalizers, no annotations."""
    configured = kopf.OperatorSettings()
    configured.watching.server_timeout = settings.watch_server_timeout_seconds
    configured.watching.client_timeout = settings.watch_server_timeout_seconds + 30
    configured.watching.connect_timeout = 30
    configured.networking.request_timeout = settings.api_timeout_seconds
    configured.posting.enabled = False  # the reconciler posts its own events
    configured.scanning.disabled = True  # no CRD or namespace watching: fewer permissions
    # Only event handlers, which keep nothing in the objects: no progress or diff-base annotations to write.
    # kopf starts a worker per object with events, unbounded by default; bounded, the events of a storm wait in its
    # queues (docs/benchmarks.md). A worker keeps its slot until idle for idle_timeout (kopf's default: 5 s, which
    # would let the slots pace a storm).
    configured.queueing.worker_limit = settings.objects_in_flight
    configured.queueing.idle_timeout = 0.25
    managed = f"{MANAGED_BY}={FIELD_MANAGER}"
    configured.watching.label_selectors["apps", "v1", "deployments"] = managed
    configured.watching.label_selectors["v1", "configmaps"] = managed
    # kopf reports every handler run at INFO; the reconciler logs what matters.
    logging.getLogger("kopf").setLevel(settings.log_level if settings.log_level == "DEBUG" else "WARNING")
    return configured
