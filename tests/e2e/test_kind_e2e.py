"""End to end on a real cluster (kind, built here): the images, the chart, Kafka and Cassandra in the cluster, and the
sample pipeline. Events go in, rows come out; scaling, lost workers, config rollouts, lost servers, autoscaling, an
operator restart, pausing and deleting lose nothing. Each scenario ends with every produced event a row and every
offset committed. Skipped, with the reason, only where no container can run at all."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sluice_stack.kind import DATA, KAFKA, OPERATOR_NAMESPACE, RELEASE, Cluster, build_images
from sluice_stack.kind import sample_pipeline as sample

from ..images.docker import REPO
from ..waiting import wait_for
from .cluster import containers_unavailable

REASON = containers_unavailable()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

PIPELINE, NAMESPACE = "gophers-r-us", "default"  # the sample
TOPIC, TABLE, GROUP = "store-events", "store.store_events", f"{NAMESPACE}.{PIPELINE}"
PARTITIONS = 3
WORKERS = f"sluice.dev/pipeline={PIPELINE}"
CHILDREN = [("configmap", f"{PIPELINE}-pipeline"), ("deployment", PIPELINE)]
DEPARTMENTS = {"evt-0": "gophers", "evt-1": "stickers", "evt-2": "clothing", "evt-3": "misc"}  # toolbox.ITEMS
BACKLOG = 60_000  # events: with SLOW_DELIVERY a worker takes far longer to drain them alone than a few lag intervals
# One row per request, one request at a time: a worker is bound by a Cassandra round trip per row, so the backlog
# outlasts the lag checks after it turns ready. At the default 64 in flight a CI run saw the lag at 60,000 while
# the worker started (scale-up waits for ready workers) and at 0 by the first check that found it ready.
SLOW_DELIVERY = {"maxInFlight": 1, "maxRowsPerWrite": 1}
LAG_INTERVAL_SECONDS = 5  # the chart's lagIntervalSeconds here: autoscaling reacts within seconds


@dataclass
class Stream:
    """The events produced to one topic so far, numbered across topics so every id is unique."""

    topic: str
    group: str
    table: str
    produced: int = 0
    first: int = 0


@dataclass
class Producer:
    """Produces `batches` batches of `size` events, one batch per `pace` seconds, in a thread."""

    cluster: Cluster
    stream: Stream
    batches: int
    size: int = 100
    pace: float = 1.0
    errors: list[BaseException] = field(default_factory=list)

    def __enter__(self) -> Producer:
        self.thread = threading.Thread(target=self._run, name="producer")
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            for _ in range(self.batches):
                produce(self.cluster, self.stream, self.size)
                time.sleep(self.pace)
        except BaseException as exc:  # reported by __exit__, in the test's thread
            self.errors.append(exc)

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(600)
        assert not self.thread.is_alive(), "the producer did not finish within 600 s"
        assert not self.errors, f"producing failed: {self.errors[0]}"


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return build_images()


@pytest.fixture(scope="module")
def cluster(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh kind cluster with the images loaded, the chart installed and Kafka and Cassandra running."""
    made = Cluster("sluice-e2e", tmp_path_factory.mktemp("kind"))
    started = time.monotonic()
    made.create()
    print(f"kind cluster up in {time.monotonic() - started:.0f}s")
    try:
        made.install(images, f"--set=lagIntervalSeconds={LAG_INTERVAL_SECONDS}")
        # The pipelines' namespace admits only pods of the `restricted` Pod Security Standard, as a careful
        # cluster admin sets it: every worker of every scenario must pass the API server's own admission.
        made.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        made.toolbox("create-topic", TOPIC, str(PARTITIONS))
        print(f"cluster ready for the scenarios in {time.monotonic() - started:.0f}s")
        yield made
    finally:
        if os.environ.get("SLUICE_E2E_KEEP") != "1":
            made.delete()


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream(TOPIC, GROUP, TABLE)


# -- what the tests do and check -------------------------------------------------------------------------------


def produce(cluster: Cluster, stream: Stream, count: int) -> None:
    cluster.toolbox("produce", stream.topic, str(stream.first + stream.produced), str(count))
    stream.produced += count


def rows(cluster: Cluster, stream: Stream, *ids: str) -> dict[str, Any]:
    return cluster.toolbox("rows", stream.table, *ids)


def all_written(cluster: Cluster, stream: Stream, timeout: float = 300) -> None:
    """Every produced event is a row and every offset is committed: nothing lost, nothing left behind."""
    wait_for(f"{stream.produced} rows in {stream.table}",
             lambda: rows(cluster, stream)["count"] == stream.produced, timeout, interval=2)  # fmt: skip
    want = {"committed": stream.produced, "end": stream.produced}
    wait_for(f"group {stream.group} to commit all {stream.produced} offsets",
             lambda: cluster.toolbox("offsets", stream.group, stream.topic) == want, timeout, interval=2)  # fmt: skip


def pipeline(cluster: Cluster, name: str = PIPELINE) -> dict[str, Any]:
    return cluster.get("datapipeline", name, NAMESPACE)


def conditions(cluster: Cluster, name: str = PIPELINE) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in pipeline(cluster, name).get("status", {}).get("conditions", [])}


def ready_workers(cluster: Cluster, name: str = PIPELINE) -> int:
    """Workers the DataPipeline reports ready, while its Ready condition holds (0 otherwise)."""
    status = pipeline(cluster, name).get("status", {})
    ready = conditions(cluster, name).get("Ready", {}).get("status") == "True"
    return int(status.get("readyReplicas") or 0) if ready else 0


def worker_pods(cluster: Cluster, selector: str = WORKERS) -> list[dict[str, Any]]:
    return [p for p in cluster.pods(NAMESPACE, selector) if not p["metadata"].get("deletionTimestamp")]


def restarts(cluster: Cluster) -> dict[str, int]:
    return {p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))
            for p in worker_pods(cluster)}  # fmt: skip


def get_dp(cluster: Cluster) -> dict[str, str]:
    """`kubectl get dp` as a user reads it: column -> value of the sample's row."""
    header, row = cluster.kubectl("get", "dp", PIPELINE, "-n", NAMESPACE).splitlines()[:2]
    return dict(zip(header.split(), row.split(), strict=False))


class ExitWatch:
    """`kubectl get pod -w` on one pod, catching its container's exit code before the pod object goes away."""

    def __init__(self, cluster: Cluster, pod: str) -> None:
        template = '{.status.containerStatuses[0].state.terminated.exitCode}{"\\n"}'
        self.process = subprocess.Popen(
            [str(cluster.kubectl_path), "get", "pod", pod, "-n", NAMESPACE, "-w", "-o", f"jsonpath={template}"],
            env=cluster.env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.codes: list[int] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.codes.append(int(line.strip()))

    def exit_code(self, timeout: float) -> int:
        try:
            return wait_for("the deleted worker's container to terminate", lambda: self.codes, timeout)[0]
        finally:
            self.process.kill()


# -- the scenarios, in order: each starts from where the one before left the cluster ----------------------------


def test_operator_runs_from_the_chart_and_holds_its_lease(cluster: Cluster) -> None:
    deployment = cluster.get("deployment", RELEASE, OPERATOR_NAMESPACE)
    assert deployment["status"]["availableReplicas"] == 1
    (pod,) = cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice")
    assert pod["status"]["phase"] == "Running"
    lease = wait_for(
        "the operator to take its Lease",
        lambda: cluster.get("lease", RELEASE, OPERATOR_NAMESPACE).get("spec", {}).get("holderIdentity"),
    )
    assert lease == pod["metadata"]["name"]


def test_sample_pipeline_turns_events_into_rows(cluster: Cluster, stream: Stream) -> None:
    cluster.apply(sample())
    for kind, name in CHILDREN:
        wait_for(f"the {kind} {name}", lambda k=kind, n=name: cluster.exists(k, n, NAMESPACE))
    wait_for("one ready worker", lambda: ready_workers(cluster) == 1, timeout=300, interval=2)

    produce(cluster, stream, 400)
    all_written(cluster, stream)
    assert rows(cluster, stream, *DEPARTMENTS)["departments"] == DEPARTMENTS
    columns = get_dp(cluster)
    assert (columns["READY"], columns["REPLICAS"], columns["AVAILABLE"]) == ("True", "1", "1"), columns
    # Admitted as `restricted` and run so by the kubelet: the image's user and group, a read-only root.
    (pod,) = worker_pods(cluster)
    name = pod["metadata"]["name"]
    assert cluster.kubectl("exec", "-n", NAMESPACE, name, "--", "id").strip() == (
        "uid=10001(sluice) gid=10001(sluice) groups=10001(sluice)"
    )
    probe = "import os; print(bool(os.statvfs('/').f_flag & os.ST_RDONLY), os.access('/tmp', os.W_OK))"
    root_read_only, tmp_writable = cluster.kubectl("exec", "-n", NAMESPACE, name, "--", "python", "-c", probe).split()
    assert (root_read_only, tmp_writable) == ("True", "True")


def test_kubectl_scale_shares_the_partitions_among_three_workers(cluster: Cluster, stream: Stream) -> None:
    with Producer(cluster, stream, batches=10):
        cluster.kubectl("scale", "dp", PIPELINE, "-n", NAMESPACE, "--replicas=3")
        wait_for("three ready workers", lambda: ready_workers(cluster) == 3, timeout=300, interval=2)
    assert len(worker_pods(cluster)) == 3
    group = wait_for(
        "three group members with one partition each",
        lambda: (found := cluster.toolbox("members", GROUP)) and
        sorted(len(p) for _, p in found["members"]) == [1] * PARTITIONS and found,
        timeout=120, interval=2,
    )  # fmt: skip
    assert sorted(p for _, parts in group["members"] for p in parts) == list(range(PARTITIONS))
    all_written(cluster, stream)


def test_a_deleted_worker_drains_and_exits_0_and_a_crashed_one_loses_nothing(cluster: Cluster, stream: Stream) -> None:
    grace = int(cluster.get("deployment", PIPELINE, NAMESPACE)["spec"]["template"]["spec"]
                ["terminationGracePeriodSeconds"])  # fmt: skip
    with Producer(cluster, stream, batches=12):
        time.sleep(3)
        first, second = (p["metadata"]["name"] for p in worker_pods(cluster)[:2])
        watch = ExitWatch(cluster, first)
        time.sleep(1)  # the watch has listed the pod
        cluster.kubectl("delete", "pod", first, "-n", NAMESPACE, "--wait=false")  # SIGTERM: drain and commit
        assert watch.exit_code(timeout=grace + 30) == 0
        cluster.kubectl("delete", "pod", second, "-n", NAMESPACE, "--grace-period=0", "--force")  # a crash
    wait_for("three ready workers again", lambda: ready_workers(cluster) == 3, timeout=300, interval=2)
    all_written(cluster, stream)


def test_a_config_change_rolls_the_workers_and_new_rows_use_it(cluster: Cluster, stream: Stream) -> None:
    before = pipeline(cluster)["status"]["configHash"]
    changed = sample(replicas=3)
    changed["spec"]["transform"]["lookups"]["department"]["table"]["blue-gopher"] = "plush"
    with Producer(cluster, stream, batches=10):
        cluster.apply(changed)
        wait_for("a new config hash", lambda: pipeline(cluster)["status"].get("configHash") not in (None, before))
        cluster.rollout("deployment", PIPELINE, NAMESPACE)
    wait_for("three ready workers on the new config", lambda: ready_workers(cluster) == 3, timeout=300, interval=2)
    first_new = stream.first + stream.produced
    produce(cluster, stream, 100)
    all_written(cluster, stream)
    new_gopher = f"evt-{first_new + (-first_new) % 4}"  # toolbox.ITEMS[0] is blue-gopher
    assert rows(cluster, stream, new_gopher)["departments"] == {new_gopher: "plush"}
    assert rows(cluster, stream, "evt-0")["departments"] == {"evt-0": "gophers"}  # written before the change


def test_cassandra_pod_deleted_mid_stream_loses_nothing(cluster: Cluster, stream: Stream) -> None:
    before = restarts(cluster)
    with Producer(cluster, stream, batches=15):
        time.sleep(2)
        cluster.kubectl("delete", "pod", "cassandra-0", "-n", DATA, "--wait=false")
        unready = wait_for(
            "the DataPipeline to say its workers cannot reach Cassandra",
            lambda: (c := conditions(cluster)["Ready"])["reason"] == "WorkersNotReady"
            and "Cassandra unreachable" in c["message"] and c,
            timeout=180, interval=1,
        )  # fmt: skip
        assert unready["status"] == "False"
        print(f"while Cassandra was away: Ready {unready['reason']}: {unready['message']}")
        described = cluster.kubectl("describe", "dp", PIPELINE, "-n", NAMESPACE)
        assert "Cassandra unreachable" in described, described
        cluster.rollout("statefulset", "cassandra", DATA)
    wait_for("three ready workers once Cassandra is back", lambda: ready_workers(cluster) == 3, timeout=300)
    all_written(cluster, stream)
    assert restarts(cluster) == before, "workers restarted instead of waiting for Cassandra"


def test_kafka_pod_deleted_mid_stream_loses_nothing(cluster: Cluster, stream: Stream) -> None:
    before = restarts(cluster)
    with Producer(cluster, stream, batches=15):
        time.sleep(2)
        cluster.kubectl("delete", "pod", "kafka-0", "-n", DATA, "--wait=false")
        time.sleep(5)
        cluster.rollout("statefulset", "kafka", DATA)
    all_written(cluster, stream)
    assert restarts(cluster) == before, "workers restarted instead of reconnecting to Kafka"
    wait_for("three ready workers", lambda: ready_workers(cluster) == 3, timeout=120)


def test_autoscaling_follows_a_real_backlog(cluster: Cluster, stream: Stream) -> None:
    """A second pipeline starts on a backlog: the lag raises its workers to the partition count, and once the
    backlog is drained they come back down."""
    backlog = Stream("backlog-events", f"{NAMESPACE}.backlog", "store.backlog_events", first=1_000_000)
    cluster.toolbox("create-topic", backlog.topic, str(PARTITIONS))
    produce(cluster, backlog, BACKLOG)
    manifest = sample(
        replicas=1,
        autoscaling={"enabled": True, "minReplicas": 1, "targetLagPerReplica": BACKLOG // 10,
                     "scaleDownStabilizationSeconds": 10},
        delivery=SLOW_DELIVERY,
    )  # fmt: skip
    manifest["metadata"]["name"] = "backlog"
    manifest["spec"]["source"]["topics"] = [backlog.topic]
    manifest["spec"]["sink"]["table"] = "backlog_events"
    cluster.apply(manifest)
    seen: dict[str, Any] = {"lag": 0, "replicas": 0}

    def scaled_to_partitions() -> bool:
        body = pipeline(cluster, "backlog")
        status = body.get("status", {})
        seen["lag"] = max(seen["lag"], int(status.get("lag") or 0))
        seen["replicas"] = max(seen["replicas"], int(body["spec"]["replicas"]))
        if seen["replicas"] == PARTITIONS:
            return True
        ready = {c["type"]: c.get("message") for c in status.get("conditions", [])}.get("Ready")
        raise AssertionError(f"most seen {seen}; now lag {status.get('lag')}, Ready: {ready}")

    wait_for("the backlog to raise the workers to the partition count", scaled_to_partitions, timeout=300, interval=1)
    assert seen["lag"] > 0, "status.lag never showed the backlog"
    all_written(cluster, backlog, timeout=600)
    wait_for("the workers back down to minReplicas", lambda: pipeline(cluster, "backlog")["spec"]["replicas"] == 1,
             timeout=180, interval=2)  # fmt: skip
    wait_for("status.lag 0", lambda: pipeline(cluster, "backlog")["status"].get("lag") == 0, timeout=60)
    header, row = cluster.kubectl("get", "dp", "backlog", "-n", NAMESPACE).splitlines()[:2]
    assert dict(zip(header.split(), row.split(), strict=False))["LAG"] == "0"
    cluster.kubectl("delete", "dp", "backlog", "-n", NAMESPACE)


def test_a_new_operator_takes_the_lease_and_converges(cluster: Cluster, stream: Stream) -> None:
    (old,) = cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice")
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "-n", OPERATOR_NAMESPACE, "--wait=false")
    cluster.kubectl("scale", "dp", PIPELINE, "-n", NAMESPACE, "--replicas=2")  # while no operator runs
    holder = wait_for(
        "a new operator pod to hold the Lease",
        lambda: (h := cluster.get("lease", RELEASE, OPERATOR_NAMESPACE)["spec"].get("holderIdentity"))
        not in (None, old["metadata"]["name"]) and h,
        timeout=180, interval=2,
    )  # fmt: skip
    assert holder in [p["metadata"]["name"] for p in cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice")]
    wait_for("the Deployment scaled to 2",
             lambda: cluster.get("deployment", PIPELINE, NAMESPACE)["spec"]["replicas"] == 2, timeout=120)  # fmt: skip
    wait_for("two ready workers", lambda: ready_workers(cluster) == 2, timeout=300, interval=2)
    produce(cluster, stream, 200)
    all_written(cluster, stream)


def test_paused_pipeline_keeps_its_offsets_and_resumes_where_it_stopped(cluster: Cluster, stream: Stream) -> None:
    cluster.kubectl("patch", "dp", PIPELINE, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_for("no worker pods", lambda: not cluster.pods(NAMESPACE, WORKERS), timeout=120, interval=2)
    wait_for("Ready with reason Paused", lambda: conditions(cluster)["Ready"]["reason"] == "Paused", timeout=60)
    written = stream.produced
    produce(cluster, stream, 300)
    time.sleep(5)
    assert rows(cluster, stream)["count"] == written, "rows were written while paused"
    assert cluster.toolbox("offsets", GROUP, TOPIC) == {"committed": written, "end": stream.produced}
    cluster.kubectl("patch", "dp", PIPELINE, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"paused":false}}')
    wait_for("two ready workers", lambda: ready_workers(cluster) == 2, timeout=300, interval=2)
    all_written(cluster, stream)


def test_a_kafka_login_from_a_secret_writes_and_reads_lag_and_the_password_shows_nowhere(cluster: Cluster) -> None:
    """A SCRAM-SHA-512 login to Kafka from a Secret of the `restricted` namespace: the workers write every event,
    the operator reads the lag with that Secret, and the password is in no ConfigMap, pod, Deployment, status,
    event or log."""
    name, user, password = "secured", "e2e-pipeline", secrets.token_urlsafe(18)
    cluster.toolbox("scram-user", user, password)
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-login", "namespace": NAMESPACE},
                   "stringData": {"username": user, "password": password}})  # fmt: skip
    secured = Stream("secured-events", f"{NAMESPACE}.{name}", "store.secured_events", first=1_000_000)
    cluster.toolbox("create-topic", secured.topic, "1")
    manifest = sample(replicas=1)
    manifest["metadata"]["name"] = name
    manifest["spec"]["source"].update(
        bootstrapServers=KAFKA.replace(":9092", ":9094"),  # the SASL_PLAINTEXT listener
        topics=[secured.topic],
        auth={"mechanism": "SCRAM-SHA-512", "secret": "kafka-login"},
    )
    manifest["spec"]["sink"]["table"] = "secured_events"
    cluster.apply(manifest)
    try:
        wait_for("one ready worker", lambda: ready_workers(cluster, name) == 1, timeout=300, interval=2)
        produce(cluster, secured, 300)
        all_written(cluster, secured)
        wait_for("status.lag 0, read by the operator with the Secret",
                 lambda: pipeline(cluster, name).get("status", {}).get("lag") == 0, timeout=60, interval=2)  # fmt: skip
        selector = f"sluice.dev/pipeline={name}"
        kinds, operator = "configmap,deployment,replicaset,pod", "app.kubernetes.io/name=sluice"
        seen = {
            "children": cluster.kubectl("get", kinds, "-n", NAMESPACE, "-l", selector, "-o", "yaml"),
            "the DataPipeline": cluster.kubectl("get", "dp", name, "-n", NAMESPACE, "-o", "yaml"),
            "events": cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "yaml"),
            "worker logs": cluster.kubectl("logs", "-n", NAMESPACE, "-l", selector, "--tail=-1"),
            "operator logs": cluster.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", operator, "--tail=-1"),
        }
        assert "kafka-login" in seen["children"], "the workers do not reference the Secret"
        encoded = base64.b64encode(password.encode()).decode()
        leaks = [where for where, text in seen.items() if password in text or encoded in text]
        assert leaks == [], f"the password shows in {leaks}"
    finally:
        cluster.kubectl("delete", "dp", name, "-n", NAMESPACE, "--wait=false")


def test_a_pipeline_whose_workers_cannot_start_says_why(cluster: Cluster) -> None:
    """Its hook cannot be imported: each worker exits 2 naming the field, and the DataPipeline tells it in
    `kubectl get dp` and `describe` instead of crash-looping silently while it says nothing."""
    manifest = sample(replicas=1, transform={**sample()["spec"]["transform"], "python": "no_such_module:enrich"})
    manifest["metadata"]["name"] = name = "broken-hook"
    cluster.apply(manifest)
    try:
        # Between two crashes the restarted container runs for a moment and the conditions say only that it is
        # not ready yet (a worker that recovers is not failing); after its next crash they tell why again. So
        # each view is read until it shows the crash, as a user looking again would, and judged as one reading.
        now = wait_for("Ready=False with reason WorkersFailing",
                       lambda: (c := conditions(cluster, name)).get("Ready", {}).get("reason") == "WorkersFailing"
                       and c, timeout=180, interval=2)  # fmt: skip
        ready = now["Ready"]
        assert "spec.transform.python: cannot import 'no_such_module'" in ready["message"], ready
        assert "exit code 2" in ready["message"], ready
        assert now["Degraded"]["status"] == "True", now

        def listed() -> dict[str, str]:
            header, row = cluster.kubectl("get", "dp", name, "-n", NAMESPACE).splitlines()[:2]
            return dict(zip(header.split(), row.split(), strict=False))

        columns = wait_for(
            "kubectl get dp to say WorkersFailing", lambda: (c := listed())["REASON"] == "WorkersFailing" and c, 120
        )
        assert columns["READY"] == "False", columns
        wait_for("describe to show the worker's own message",
                 lambda: "No module named 'no_such_module'" in cluster.kubectl("describe", "dp", name, "-n", NAMESPACE),
                 timeout=120, interval=2)  # fmt: skip
        (pod,) = worker_pods(cluster, f"sluice.dev/pipeline={name}")
        (status,) = pod["status"]["containerStatuses"]
        ended = status["state"].get("terminated") or status["lastState"]["terminated"]
        assert ended["exitCode"] == 2 and "spec.transform.python" in ended["message"], status
    finally:
        cluster.kubectl("delete", "dp", name, "-n", NAMESPACE, "--wait=false")


def test_helm_upgrade_rolls_the_operator(cluster: Cluster) -> None:
    (old,) = cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice")
    cluster.helm("upgrade", RELEASE, str(REPO / "charts" / "sluice"), "--namespace", OPERATOR_NAMESPACE,
                 "--reuse-values", "--set=logLevel=DEBUG", "--wait", "--timeout=5m")  # fmt: skip
    (new,) = wait_for("one operator pod, the new one",
                      lambda: [p for p in cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice")
                               if p["metadata"]["name"] != old["metadata"]["name"]
                               and not p["metadata"].get("deletionTimestamp")], timeout=120)  # fmt: skip
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["SLUICE_LOG_LEVEL"] == "DEBUG"
    wait_for("the new operator to hold the Lease",
             lambda: cluster.get("lease", RELEASE, OPERATOR_NAMESPACE).get("spec", {}).get("holderIdentity")
             == new["metadata"]["name"], timeout=120)  # fmt: skip


def test_deleting_the_pipeline_stops_its_workers_within_the_grace_period(cluster: Cluster, stream: Stream) -> None:
    grace = int(cluster.get("deployment", PIPELINE, NAMESPACE)["spec"]["template"]["spec"]
                ["terminationGracePeriodSeconds"])  # fmt: skip
    with Producer(cluster, stream, batches=5):
        time.sleep(2)
        started = time.monotonic()
        cluster.kubectl("delete", "dp", PIPELINE, "-n", NAMESPACE, "--wait=false")
        wait_for("no worker pods", lambda: not cluster.pods(NAMESPACE, WORKERS), timeout=grace + 60, interval=1)
        seconds = time.monotonic() - started
    assert seconds <= grace + 15, f"workers took {seconds:.0f}s to go (grace period {grace}s)"
    for kind, name in CHILDREN:
        wait_for(
            f"the {kind} {name} to be garbage-collected", lambda k=kind, n=name: not cluster.exists(k, n, NAMESPACE)
        )
    # What the workers committed was written: a new pipeline on the same group would start after it.
    offsets = cluster.toolbox("offsets", GROUP, TOPIC)
    assert rows(cluster, stream)["count"] >= offsets["committed"]


def test_helm_uninstall_and_deleting_the_crd_leave_nothing(cluster: Cluster) -> None:
    cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout=5m")
    cluster.kubectl("delete", "crd", "datapipelines.sluice.dev", "--wait=true", timeout=120)
    wait_for("no operator pods", lambda: not cluster.pods(OPERATOR_NAMESPACE, "app.kubernetes.io/name=sluice"))
    left = cluster.kubectl("get", "clusterrole,clusterrolebinding,all,serviceaccount,role,rolebinding,lease,configmap",
                           "-A", "-l", "app.kubernetes.io/instance=sluice", "-o", "name")  # fmt: skip
    assert left.strip() == "", f"left behind by helm uninstall:\n{left}"
    assert not cluster.exists("crd", "datapipelines.sluice.dev")
    assert not cluster.exists("lease", RELEASE, OPERATOR_NAMESPACE)
