"""The operator's settings from the environment, the kopf settings made from them, and the command line."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError
from sluice_operator.cli import main
from sluice_operator.settings import OperatorSettings, kopf_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SLUICE_"):
            monkeypatch.delenv(name)


def test_defaults_watch_every_namespace_with_leader_election() -> None:
    settings = OperatorSettings()
    assert settings.watch_namespaces == []
    assert settings.default_worker_image == "sluice-worker:0.1.0"
    assert settings.leader_election and settings.lease_name == "sluice-operator"
    assert settings.renew_interval_seconds < settings.renew_deadline_seconds < settings.lease_duration_seconds
    assert (settings.lag_interval_seconds, settings.kafka_timeout_seconds) == (30, 10)
    assert settings.lag_status_refresh_seconds == 300


def test_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WATCH_NAMESPACES", " shop, ,billing ")
    monkeypatch.setenv("SLUICE_DEFAULT_WORKER_IMAGE", "registry.example/sluice-worker:2")
    monkeypatch.setenv("SLUICE_LIVENESS_PORT", "9000")
    monkeypatch.setenv("SLUICE_LOG_LEVEL", "debug")
    settings = OperatorSettings()
    assert settings.watch_namespaces == ["shop", "billing"]
    assert (settings.default_worker_image, settings.liveness_port) == ("registry.example/sluice-worker:2", 9000)
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_LIVENESS_PORT", "70000"),
        ("SLUICE_LOG_LEVEL", "LOUD"),
        ("SLUICE_LEASE_DURATION_SECONDS", "1"),
        ("SLUICE_LAG_INTERVAL_SECONDS", "-1"),
        ("SLUICE_LAG_STATUS_REFRESH_SECONDS", "0"),
        ("SLUICE_KAFKA_TIMEOUT_SECONDS", "0"),
        ("SLUICE_OBJECTS_IN_FLIGHT", "0"),
    ],
)
def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        OperatorSettings()


def test_kopf_watches_are_bounded() -> None:
    configured = kopf_settings(OperatorSettings(watch_server_timeout_seconds=100))
    assert configured.watching.server_timeout == 100
    assert configured.watching.client_timeout is not None and configured.watching.client_timeout > 100
    assert configured.watching.connect_timeout
    assert configured.scanning.disabled and not configured.posting.enabled
    selectors = dict(configured.watching.label_selectors.items())
    assert set(selectors.values()) == {"app.kubernetes.io/managed-by=sluice-operator"}


def test_objects_handled_at_once_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kopf_settings(OperatorSettings()).queueing.worker_limit == 30
    monkeypatch.setenv("SLUICE_OBJECTS_IN_FLIGHT", "20")
    configured = kopf_settings(OperatorSettings())
    assert configured.queueing.worker_limit == 20
    assert configured.queueing.idle_timeout < 5  # a worker's slot is freed soon after its last event


def test_help_lists_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "SLUICE_WATCH_NAMESPACES",
        "SLUICE_DEFAULT_WORKER_IMAGE",
        "SLUICE_LIVENESS_PORT",
        "SLUICE_LEASE_NAME",
        "SLUICE_LAG_INTERVAL_SECONDS",
    ):
        assert name in out


def test_bad_settings_exit_with_a_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLUICE_LIVENESS_PORT", "-1")
    assert main([]) == 2
    assert "liveness_port" in capsys.readouterr().err


def test_check_settings_prints_them(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLUICE_WATCH_NAMESPACES", "a,b")
    assert main(["--check-settings"]) == 0
    assert json.loads(capsys.readouterr().out)["watch_namespaces"] == ["a", "b"]
