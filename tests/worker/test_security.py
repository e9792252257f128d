"""The worker, its dead letters, replay-dlq and the operator's lag reader over the stack's secured Kafka listeners
(SASL_SSL with a SCRAM-SHA-512 login, mutual TLS, and OAUTHBEARER with tokens of an OAuth token endpoint), and the
sink over TLS with a password to the secured Cassandra node; certificates and logins from files as the operator
mounts them. A wrong CA, password or client secret fails with the reason in /readyz and loses nothing."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider
from sluice_operator.kafka import LagReader
from sluice_operator.lag import Snapshot, total_lag
from sluice_stack.cassandra import LOGIN as CASSANDRA_LOGIN
from sluice_stack.kafka import SCRAM_USER
from sluice_stack.oidc import CLIENT as OAUTH_CLIENT
from sluice_worker.credentials import read_side
from sluice_worker.manifest import load_pipeline
from sluice_worker.model import SourceSpec

from .harness import WORKER, CommitAuditor, PipelineUnderTest, running

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra]

N = 200
CA = {"ca": {"secret": "kafka-ca"}}


def mount(
    tmp_path: Path, tls_dir: Path, ca: str = "ca.crt", client: bool = False, login: bool = False, password: str = ""
) -> Path:
    """The folder the operator would mount at /etc/sluice/credentials, with the source side's files."""
    source = tmp_path / "credentials" / "source"
    source.mkdir(parents=True)
    shutil.copy(tls_dir / ca, source / "ca.crt")
    if client:
        shutil.copy(tls_dir / "client.crt", source / "tls.crt")
        shutil.copy(tls_dir / "client.key", source / "tls.key")
    if login:
        (source / "username").write_text(SCRAM_USER[0])
        (source / "password").write_text(
            (password or SCRAM_USER[1]) + "\n"
        )  # as `kubectl create secret --from-file` keeps it
    return source.parent


def read_lag(source: SourceSpec, group_id: str, credentials: Mapping[str, str]) -> Snapshot:
    """What the operator's lag reader reads (in its child process) with a pipeline's credentials."""
    reader = LagReader(timeout=10)
    try:
        return asyncio.run(reader.read(source, group_id, credentials))
    finally:
        reader.close()


@pytest.fixture
def tls_dir(kafka) -> Path:  # type: ignore[no-untyped-def]
    return Path(kafka.service.endpoints["tls_dir"])


def test_sasl_ssl_the_worker_its_dead_letters_replay_and_the_lag_reader(  # type: ignore[no-untyped-def]
    pipeline: PipelineUnderTest, make_worker, kafka, tls_dir: Path
) -> None:
    source = {"bootstrapServers": kafka.service.endpoints["sasl_ssl"], "tls": CA, "auth": {"secret": "kafka-user"}}
    manifest = pipeline.write_manifest(source=source)
    credentials = mount(pipeline.workdir, tls_dir, login=True)
    env = {"SLUICE_CREDENTIALS_DIR": str(credentials)}
    pipeline.produce(N, poison_every=50)
    poison = [e for e in pipeline.events if e.poison]
    with CommitAuditor(pipeline) as audit, running(make_worker(manifest, **env)) as worker:
        rows = pipeline.wait_for_rows(N - len(poison))
        assert len(pipeline.dead_letters(len(poison))) == len(poison)  # the dead-letter producer logged in too
        deadline = time.monotonic() + 30
        while pipeline.committed().get(0) != N and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows() and audit.violations == []
    assert pipeline.committed() == {0: N}

    # The operator's lag reader, with the same settings the workers get: it sees the group caught up.
    spec = load_pipeline(manifest).spec
    snapshot = read_lag(spec.source, pipeline.group_id, read_side(credentials, "source"))
    assert total_lag(snapshot, "earliest") == 0 and snapshot.partitions[(pipeline.topic, 0)].committed == N

    # replay-dlq over the same listener puts the dead letters back on the source topic.
    replay = subprocess.run(
        [str(WORKER), "replay-dlq", "--pipeline", str(manifest), "--idle-seconds", "3"],
        capture_output=True, text=True, timeout=60, env=worker.env,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert f"replayed {len(poison)} dead letters" in replay.stdout


def test_mutual_tls_the_worker_presents_its_client_certificate(  # type: ignore[no-untyped-def]
    pipeline: PipelineUnderTest, make_worker, kafka, tls_dir: Path
) -> None:
    tls = {**CA, "clientCertificate": {"secret": "kafka-client"}}
    manifest = pipeline.write_manifest(source={"bootstrapServers": kafka.service.endpoints["mtls"], "tls": tls})
    env = {"SLUICE_CREDENTIALS_DIR": str(mount(pipeline.workdir, tls_dir, client=True))}
    pipeline.produce(N)
    with running(make_worker(manifest, **env)) as worker:
        rows = pipeline.wait_for_rows(N)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows()
    assert pipeline.committed() == {0: N}


@pytest.mark.parametrize(
    ("ca", "password", "reason"),
    [("other-ca.crt", "", "certificate verify failed"), ("ca.crt", "not-the-password", "Authentication failed")],
    ids=["wrong-ca", "wrong-password"],
)
def test_a_wrong_ca_or_password_is_refused_with_the_reason_and_loses_nothing(  # type: ignore[no-untyped-def]
    pipeline: PipelineUnderTest, make_worker, kafka, tls_dir: Path, ca: str, password: str, reason: str
) -> None:
    source = {"bootstrapServers": kafka.service.endpoints["sasl_ssl"], "tls": CA, "auth": {"secret": "kafka-user"}}
    manifest = pipeline.write_manifest(source=source)
    pipeline.produce(N)
    wrong = mount(pipeline.workdir / "wrong", tls_dir, ca=ca, login=True, password=password)
    with running(make_worker(manifest, SLUICE_CREDENTIALS_DIR=str(wrong))) as worker:
        deadline, said = time.monotonic() + 30, ""
        while reason not in said and time.monotonic() < deadline:
            status, said = worker.readyz()
            time.sleep(0.5)
        assert status == 503 and reason in said, said
        assert worker.stop()[0] == 0
    assert pipeline.written() == 0 and pipeline.committed() == {}

    right = {"SLUICE_CREDENTIALS_DIR": str(mount(pipeline.workdir, tls_dir, login=True))}
    with running(make_worker(manifest, **right)) as worker:
        rows = pipeline.wait_for_rows(N)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows() and pipeline.committed() == {0: N}


def oauth_mount(folder: Path, secret: str) -> Path:
    """The source side of the mounted credentials for OAUTHBEARER: the OAuth client's id and secret."""
    source = folder / "credentials" / "source"
    source.mkdir(parents=True)
    (source / "username").write_text(OAUTH_CLIENT[0])
    (source / "password").write_text(secret)
    return source.parent


def test_oauthbearer_tokens_from_the_token_endpoint_for_the_worker_its_dead_letters_and_the_lag_reader(  # type: ignore[no-untyped-def]
    pipeline: PipelineUnderTest, make_worker, kafka, stack
) -> None:
    """The client credentials grant (OIDC) at the stack's token endpoint; the broker checks each token with the
    endpoint's JWKS. A wrong client secret: the token endpoint's refusal in /readyz, nothing written."""
    token_endpoint = stack.services["oidc"].endpoints["token"]
    auth = {"secret": "kafka-oauth", "mechanism": "OAUTHBEARER", "tokenEndpoint": token_endpoint, "scope": "kafka"}
    manifest = pipeline.write_manifest(source={"bootstrapServers": kafka.service.endpoints["oauth"], "auth": auth})
    pipeline.produce(N, poison_every=50)
    poison = [e for e in pipeline.events if e.poison]

    wrong = oauth_mount(pipeline.workdir / "wrong", "not-the-secret")
    with running(make_worker(manifest, SLUICE_CREDENTIALS_DIR=str(wrong))) as worker:
        deadline, said = time.monotonic() + 30, ""
        refused = 'Failed to acquire SASL OAUTHBEARER token: {"error": "invalid_client"}'
        while refused not in said and time.monotonic() < deadline:
            status, said = worker.readyz()
            time.sleep(0.5)
        assert status == 503 and refused in said, said
        assert worker.stop()[0] == 0
    assert pipeline.written() == 0 and pipeline.committed() == {}

    credentials = oauth_mount(pipeline.workdir, OAUTH_CLIENT[1])
    with CommitAuditor(pipeline) as audit, running(make_worker(manifest, SLUICE_CREDENTIALS_DIR=str(credentials))) as w:
        rows = pipeline.wait_for_rows(N - len(poison))
        assert len(pipeline.dead_letters(len(poison))) == len(poison)  # the dead-letter producer has tokens too
        deadline = time.monotonic() + 30
        while pipeline.committed().get(0) != N and time.monotonic() < deadline:
            time.sleep(0.2)
        assert w.stop()[0] == 0
    assert rows == pipeline.expected_rows() and audit.violations == []
    spec = load_pipeline(manifest).spec
    snapshot = read_lag(spec.source, pipeline.group_id, read_side(credentials, "source"))
    assert total_lag(snapshot, "earliest") == 0 and snapshot.partitions[(pipeline.topic, 0)].committed == N


def sink_mount(folder: Path, tls_dir: Path, password: str) -> Path:
    """The sink side of the mounted credentials: the CA and a login."""
    sink = folder / "credentials" / "sink"
    sink.mkdir(parents=True)
    shutil.copy(tls_dir / "ca.crt", sink / "ca.crt")
    (sink / "username").write_text(CASSANDRA_LOGIN[0])
    (sink / "password").write_text(password)
    return sink.parent


@pytest.fixture
def secure_pipeline(kafka, secure_cassandra, tmp_path: Path) -> Iterator[PipelineUnderTest]:  # type: ignore[no-untyped-def]
    """A pipeline whose table is on the TLS-only, password-protected node; the test reads it the same way."""
    tls_dir = Path(secure_cassandra.service.endpoints["tls_dir"])
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    options = {"ssl_context": context, "auth_provider": PlainTextAuthProvider(*CASSANDRA_LOGIN)}
    pipeline = PipelineUnderTest(
        kafka.bootstrap_servers, secure_cassandra.contact_point, tmp_path, cassandra_options=options
    )
    yield pipeline
    pipeline.close()


def test_the_sink_writes_over_tls_with_a_password_and_a_wrong_one_loses_nothing(  # type: ignore[no-untyped-def]
    secure_pipeline: PipelineUnderTest, make_worker, secure_cassandra
) -> None:
    pipeline = secure_pipeline
    tls_dir = Path(secure_cassandra.service.endpoints["tls_dir"])
    manifest = pipeline.write_manifest(sink={"tls": CA, "auth": {"secret": "cassandra-login"}})
    pipeline.produce(N)
    wrong = sink_mount(pipeline.workdir / "wrong", tls_dir, "not-the-password")
    with running(make_worker(manifest, SLUICE_CREDENTIALS_DIR=str(wrong))) as worker:
        deadline, said = time.monotonic() + 60, ""
        while "Bad credentials" not in said and time.monotonic() < deadline:
            status, said = worker.readyz()
            time.sleep(0.5)
        assert status == 503 and "Cassandra unreachable" in said and "Bad credentials" in said, said
        assert worker.stop()[0] == 0
    assert pipeline.committed() == {}  # nothing was written, so nothing is committed

    right = sink_mount(pipeline.workdir, tls_dir, CASSANDRA_LOGIN[1])
    with running(make_worker(manifest, SLUICE_CREDENTIALS_DIR=str(right))) as worker:
        rows = pipeline.wait_for_rows(N)
        assert worker.stop()[0] == 0
    assert rows == pipeline.expected_rows() and pipeline.committed() == {0: N}
