"""The operator at scale: seconds from applying K DataPipelines to all K Deployments existing, peak RSS, and what
it cost the control plane: the API requests per pipeline (kube-apiserver's own count) and the CPU of the API
server and etcd, which share the machine's cores with the operator.

One `sluice-operator` process (admin credentials, no leader election, all namespaces) runs for the whole
measurement. Each size goes to a fresh namespace; the clock starts before the first create and stops when
the namespace holds K Deployments owned by DataPipelines. The pipelines are the example pointed at the
stack's Kafka (the run's topic) and Cassandra, with `replicas` 0 by default: the number is then the
operator's, not kube-scheduler's and kwok's placing pods on the same two cores.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from sluice_stack.kube import install_crd
from sluice_stack.process import free_port

from ..measure import BenchError, peak_rss_bytes, process_cpu_seconds
from ..workload import REPO_DIR, Pipeline
from . import tail

OPERATOR = Path(sys.executable).with_name("sluice-operator")
CRD_FILE = REPO_DIR / "crds" / "datapipelines.sluice.dev.yaml"
GROUP, VERSION, PLURAL = "sluice.dev", "v1alpha1", "datapipelines"
APPLY_THREADS = 8
LATENCY_SAMPLES = 50  # pipelines applied one at a time after the largest size, each timed to its Deployment
POLL_SECONDS = 0.02
SETTLE_TIMEOUT = 600  # 10,000 pipelines Ready after their Deployments exist


@dataclass
class Scale:
    """One size: how long applying took, how long until every Deployment existed, the operator then."""

    pipelines: int
    apply_seconds: float
    seconds: float
    operator_cpu_seconds: float
    peak_rss_bytes: int
    control_plane_cpu_seconds: dict[str, float] = field(default_factory=dict)  # kube-apiserver, etcd, ...
    requests: Counter[str] = field(default_factory=Counter)  # "PATCH datapipelines/status" -> count, all clients

    def requests_per_pipeline(self, verbs: Sequence[str] | None = None) -> float:
        """Requests of every client (the operator, the bench's creates, the controllers) per pipeline."""
        counted = sum(n for key, n in self.requests.items() if verbs is None or key.split()[0] in verbs)
        return counted / self.pipelines


@dataclass(frozen=True)
class Latency:
    """Seconds from one create to its Deployment existing, for pipelines applied one at a time while `present`
    others exist, all of them Ready: `settle_seconds` is how long that took after the last size's Deployments
    existed (the Deployment controller and the operator's status writes still catch up then)."""

    present: int
    seconds: tuple[float, ...]
    settle_seconds: float = 0.0

    def quantile(self, q: float) -> float:
        """The nearest-rank quantile: p99 of 50 samples is the slowest."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class OperatorResult:
    scales: list[Scale] = field(default_factory=list)
    latency: Latency | None = None
    peak_rss_bytes: int = 0
    replicas: int = 0
    log: Path | None = None


class _Cluster:
    """The admin's view of the API server, with enough connections for parallel creates."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = APPLY_THREADS * 2
        api = client.ApiClient(configuration)
        self.core, self.apps, self.custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise

    def owned_deployments(self, namespace: str) -> int:
        """Deployments in `namespace` controlled by a DataPipeline."""
        response: Any = self.apps.list_namespaced_deployment(namespace, _preload_content=False)  # raw: faster
        items = json.loads(response.data)["items"]
        return sum(
            any(ref.get("kind") == "DataPipeline" for ref in item["metadata"].get("ownerReferences", []))
            for item in items
        )

    def create_pipeline(self, namespace: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def unready_pipelines(self) -> int:
        """DataPipelines, in every namespace, whose status does not say Ready for their current generation."""
        response: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _preload_content=False)
        return sum(not is_ready(item) for item in json.loads(response.data)["items"])

    def deployment_exists(self, namespace: str, name: str) -> bool:
        try:
            self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


def is_ready(pipeline: dict[str, Any]) -> bool:
    """The DataPipeline's status says Ready, computed from its current generation."""
    status = pipeline.get("status") or {}
    return status.get("observedGeneration") == pipeline["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


@dataclass(frozen=True)
class Servers:
    """Where the pipelines' workers would read and write: the stack's real servers and the run's topic, so
    whatever the operator asks of Kafka per pipeline (e.g. consumer lag) gets real answers."""

    bootstrap: str
    contact_point: str
    topic: str


def _pipelines(pipeline: Pipeline, namespace: str, count: int, replicas: int, servers: Servers) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        body = copy.deepcopy(pipeline.manifest)
        body["metadata"] = {"name": f"gophers-{i:04d}", "namespace": namespace}
        spec = body["spec"]
        spec["replicas"] = replicas
        spec["source"]["bootstrapServers"], spec["source"]["topics"] = servers.bootstrap, [servers.topic]
        spec["sink"]["contactPoints"] = [servers.contact_point]
        bodies.append(body)
    return bodies


_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_requests(env: Mapping[str, str]) -> Counter[str]:
    """kube-apiserver's count of the requests it answered, watches left out: "VERB resource[/subresource]"."""
    metrics = subprocess.run(
        ["kubectl", "get", "--raw", "/metrics"], env=env, check=True, capture_output=True, text=True
    ).stdout
    return requests_in(metrics)


def requests_in(metrics: str) -> Counter[str]:
    """The requests counted in kube-apiserver's metrics text, by "VERB resource[/subresource]", watches left out."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if match := _REQUEST.match(line):
            labels = dict(_LABEL.findall(match["labels"]))
            if labels.get("verb") in ("WATCH", "CONNECT"):
                continue
            what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            counts[f"{labels.get('verb')} {what}"] += round(float(match["value"]))
    return counts


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: process_cpu_seconds(pid) or 0.0 for name, pid in pids.items()}


def _wait(probe: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.25)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail(log)}")


def _healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise BenchError(f"sluice-operator exited with {process.returncode}\n{tail(log)}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _measure(
    cluster: _Cluster,
    operator_pid: int,
    bodies: list[dict[str, Any]],
    namespace: str,
    log: Path,
    env: Mapping[str, str],
    control_plane: Mapping[str, int],
) -> Scale:
    """Creates `bodies` in a fresh `namespace` (APPLY_THREADS at a time) and waits for their Deployments."""
    cluster.create_namespace(namespace)
    requests_before, control_plane_before = api_requests(env), _cpu(control_plane)
    cpu_before = process_cpu_seconds(operator_pid) or 0.0
    started = time.monotonic()
    with ThreadPoolExecutor(APPLY_THREADS) as pool:
        list(pool.map(lambda body: cluster.create_pipeline(namespace, body), bodies))
    applied = time.monotonic() - started
    _wait(lambda: cluster.owned_deployments(namespace) >= len(bodies), 600, f"{len(bodies)} Deployments", log)
    seconds = time.monotonic() - started
    requests = api_requests(env)
    requests.subtract(requests_before)
    control_plane_after = _cpu(control_plane)
    return Scale(
        pipelines=len(bodies),
        apply_seconds=applied,
        seconds=seconds,
        operator_cpu_seconds=(process_cpu_seconds(operator_pid) or 0.0) - cpu_before,
        peak_rss_bytes=peak_rss_bytes(operator_pid) or 0,
        control_plane_cpu_seconds={
            name: after - control_plane_before[name] for name, after in control_plane_after.items()
        },
        requests=+requests,
    )


def _latency(cluster: _Cluster, bodies: list[dict[str, Any]], namespace: str, present: int, log: Path) -> Latency:
    """Once every pipeline present is Ready, creates `bodies` one at a time, each timed until its Deployment exists
    (polled every POLL_SECONDS)."""
    settling = time.monotonic()
    _wait(lambda: cluster.unready_pipelines() == 0, SETTLE_TIMEOUT, "every DataPipeline present to be Ready", log)
    settle_seconds = time.monotonic() - settling
    cluster.create_namespace(namespace)
    seconds = []
    for body in bodies:
        name = body["metadata"]["name"]
        started = time.monotonic()
        cluster.create_pipeline(namespace, body)
        while not cluster.deployment_exists(namespace, name):
            if time.monotonic() - started > 60:
                raise BenchError(f"no Deployment for {namespace}/{name} after 60s\n{tail(log)}")
            time.sleep(POLL_SECONDS)
        seconds.append(time.monotonic() - started)
    return Latency(present, tuple(seconds), settle_seconds)


def run(
    kube_env: dict[str, str],
    servers: Servers,
    sizes: Sequence[int],
    run_id: str,
    workdir: Path,
    replicas: int = 0,
    control_plane: Mapping[str, int] | None = None,
) -> OperatorResult:
    """Applies the CRD, starts the operator, measures each size, stops the operator and deletes the namespaces.
    `control_plane`: the pids of kube-apiserver, etcd and the controllers, charged with their CPU of each size."""
    env = {**os.environ, **kube_env}
    install_crd(env, CRD_FILE)
    cluster = _Cluster(kube_env["KUBECONFIG"])
    pipeline = Pipeline.example()
    port = free_port()
    operator_env = {k: v for k, v in env.items() if not k.startswith("SLUICE_") and k != "KUBERNETES_SERVICE_HOST"}
    operator_env |= {
        "SLUICE_LEADER_ELECTION": "false",
        "SLUICE_LIVENESS_HOST": "127.0.0.1",
        "SLUICE_LIVENESS_PORT": str(port),
        "SLUICE_DEFAULT_WORKER_IMAGE": "sluice-worker:bench",
    }
    log = workdir / "operator.log"
    result = OperatorResult(replicas=replicas, log=log)
    namespaces: list[str] = []
    with open(log, "wb") as out:
        process = subprocess.Popen([str(OPERATOR)], env=operator_env, stdout=out, stderr=out)
    try:
        _wait(lambda: _healthy(process, port, log), 60, "the operator's /healthz", log)
        warmup = f"bench-op-warmup-{run_id}"
        namespaces.append(warmup)
        cluster.create_namespace(warmup)
        cluster.create_pipeline(warmup, _pipelines(pipeline, warmup, 1, replicas, servers)[0])
        _wait(lambda: cluster.owned_deployments(warmup) == 1, 120, "the operator's first Deployment", log)
        for size in sizes:
            namespace = f"bench-op-{size}-{run_id}"
            namespaces.append(namespace)
            bodies = _pipelines(pipeline, namespace, size, replicas, servers)
            scale = _measure(cluster, process.pid, bodies, namespace, log, env, control_plane or {})
            result.scales.append(scale)
            print(
                f"operator: {size:,} pipelines -> Deployments in {scale.seconds:.1f}s "
                f"(creating them took {scale.apply_seconds:.1f}s)",
                file=sys.stderr,
            )
        if sizes:
            namespace = f"bench-op-latency-{run_id}"
            namespaces.append(namespace)
            bodies = _pipelines(pipeline, namespace, LATENCY_SAMPLES, replicas, servers)
            result.latency = _latency(cluster, bodies, namespace, 1 + sum(sizes), log)
            print(
                f"operator: create -> Deployment with {result.latency.present:,} present: "
                f"p50 {result.latency.quantile(0.5):.2f}s, p99 {result.latency.quantile(0.99):.2f}s",
                file=sys.stderr,
            )
        result.peak_rss_bytes = peak_rss_bytes(process.pid) or 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for namespace in namespaces:
            cluster.delete_namespace(namespace)
    return result
