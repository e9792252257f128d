"""Process settings from the environment (`SLUICE_*`): endpoint overrides, HTTP port, pod identity."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .credentials import CREDENTIALS_DIR
from .model import DataPipeline


class WorkerSettings(BaseSettings):
    """What the environment decides; the pipeline itself comes from the manifest file."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    kafka_bootstrap_servers: str | None = Field(default=None, description="Overrides spec.source.")
    cassandra_contact_points: str | None = Field(default=None, description="Comma list; overrides spec.sink.")
    http_host: str = Field(default="0.0.0.0", description="Where /metrics, /healthz and /readyz listen.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 disables the HTTP endpoints.")
    pod_name: str | None = Field(default=None, description="group.instance.id with static membership.")
    shutdown_budget_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Seconds from SIGTERM to exit. Default: terminationGracePeriodSeconds minus shutdownMarginSeconds.",
    )
    credentials_dir: Path = Field(
        default=CREDENTIALS_DIR, description="Where the operator mounts the Secrets of spec.source/sink.tls and auth."
    )
    write_timeout_seconds: float = Field(default=10.0, gt=0, description="Cassandra request timeout.")
    termination_log: Path = Field(
        default=Path("/dev/termination-log"),
        description="Where an invalid pipeline is explained for `kubectl describe pod` and the operator; written "
        "only if the file exists (the kubelet makes it in a pod).",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    def apply_overrides(self, pipeline: DataPipeline) -> DataPipeline:
        """The pipeline with the environment's endpoints in place of the manifest's."""
        spec = pipeline.spec
        source, sink = spec.source, spec.sink
        if self.kafka_bootstrap_servers:
            source = source.model_copy(update={"bootstrap_servers": self.kafka_bootstrap_servers})
        if self.cassandra_contact_points:
            points = [p.strip() for p in self.cassandra_contact_points.split(",") if p.strip()]
            sink = sink.model_copy(update={"contact_points": points})
        return pipeline.model_copy(update={"spec": spec.model_copy(update={"source": source, "sink": sink})})
