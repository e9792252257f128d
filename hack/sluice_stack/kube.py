"""A Kubernetes control plane as local processes: etcd, kube-apiserver, controller-manager, scheduler, kwok."""

from __future__ import annotations

import secrets
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from .config import component_dir
from .process import Service, free_port

FAKE_NODE = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/24"  # only allocated in etcd; no traffic is ever sent to it


def bin_dir() -> Path:
    return component_dir("kubernetes") / "bin"


def tool_dirs() -> list[Path]:
    """Folders holding kubectl, helm and kwok, to put first on PATH."""
    return [bin_dir(), component_dir("helm") / "bin", component_dir("kwok") / "bin"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account signing key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=sluice-local-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=kube-apiserver",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        cwd=pki,
    )
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "san.ext",
        "-out",
        "apiserver.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, ca: Path, user: str, token: str) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: sluice-local
  cluster: {{server: "{server}", certificate-authority: "{ca}"}}
users:
- name: {user}
  user: {{token: "{token}"}}
contexts:
- name: {user}@sluice-local
  context: {{cluster: sluice-local, user: {user}, namespace: default}}
current-context: {user}@sluice-local
"""
    )


def make_services(root: Path) -> dict[str, Service]:
    """The control plane's services, configured under `root` (not started)."""
    data, logs = root / "data" / "kube", root / "logs"
    pki = data / "pki"
    _make_pki(pki)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    cm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"

    tokens = {
        user: secrets.token_hex(16) for user in ("admin", "system:kube-controller-manager", "system:kube-scheduler")
    }
    (data / "tokens.csv").write_text(
        f'{tokens["admin"]},admin,admin,"system:masters"\n'
        f"{tokens['system:kube-controller-manager']},system:kube-controller-manager,kcm\n"
        f"{tokens['system:kube-scheduler']},system:kube-scheduler,sched\n"
    )
    admin_kubeconfig = data / "admin.kubeconfig"
    write_kubeconfig(admin_kubeconfig, server, pki / "ca.crt", "admin", tokens["admin"])
    write_kubeconfig(
        data / "controller-manager.kubeconfig",
        server,
        pki / "ca.crt",
        "system:kube-controller-manager",
        tokens["system:kube-controller-manager"],
    )
    write_kubeconfig(
        data / "scheduler.kubeconfig", server, pki / "ca.crt", "system:kube-scheduler", tokens["system:kube-scheduler"]
    )

    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd = Service(
        name="etcd",
        argv=[
            str(component_dir("etcd") / "bin" / "etcd"),
            "--name=local",
            f"--data-dir={data / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=local=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        log_path=str(logs / "etcd.log"),
        cwd=str(data),
        endpoints={"url": etcd_url},
    )
    apiserver = Service(
        name="kube-apiserver",
        argv=[
            str(bin_dir() / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={data / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={data / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",  # no Endpoints for a loopback advertise address
            "--allow-privileged=true",
            "--v=1",
        ],
        log_path=str(logs / "kube-apiserver.log"),
        cwd=str(data),
        endpoints={
            "server": server,
            "kubeconfig": str(admin_kubeconfig),
            "ca": str(pki / "ca.crt"),
            "token": tokens["admin"],
        },
    )
    controller_manager = Service(
        name="kube-controller-manager",
        argv=[
            str(bin_dir() / "kube-controller-manager"),
            f"--kubeconfig={data / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={data / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={data / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cm_port}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--v=1",
        ],
        log_path=str(logs / "kube-controller-manager.log"),
        cwd=str(data),
        endpoints={"healthz": f"https://127.0.0.1:{cm_port}/healthz"},
    )
    scheduler = Service(
        name="kube-scheduler",
        argv=[
            str(bin_dir() / "kube-scheduler"),
            f"--kubeconfig={data / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={data / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={data / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            "--leader-elect=false",
            "--v=1",
        ],
        log_path=str(logs / "kube-scheduler.log"),
        cwd=str(data),
        endpoints={"healthz": f"https://127.0.0.1:{sched_port}/healthz"},
    )
    kwok = Service(
        name="kwok",
        argv=[
            str(component_dir("kwok") / "bin" / "kwok"),
            f"--kubeconfig={admin_kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.1",
            # Renew node Leases as a kubelet does: otherwise the node controller finds kwok's status heartbeats
            # late, calls the node NotReady for a moment and marks every pod on it NotReady for good.
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}",
        ],
        log_path=str(logs / "kwok.log"),
        cwd=str(data),
        endpoints={"healthz": f"http://127.0.0.1:{kwok_port}/healthz"},
    )
    return {s.name: s for s in (etcd, apiserver, controller_manager, scheduler, kwok)}


def _get(url: str, token: str | None = None, ca: str | None = None) -> bool:
    context = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=3, context=context if url.startswith("https") else None) as r:
        return bool(r.status == 200)


def is_ready(service: Service) -> bool:
    ep = service.endpoints
    if service.name == "etcd":
        return _get(ep["url"] + "/health")
    if service.name == "kube-apiserver":
        return _get(ep["server"] + "/readyz", ep["token"], ep["ca"])
    return _get(ep["healthz"])


FAKE_NODE_MANIFEST = f"""
apiVersion: v1
kind: Node
metadata:
  name: {FAKE_NODE}
  annotations: {{node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}}
  labels: {{kubernetes.io/hostname: {FAKE_NODE}, kubernetes.io/os: linux, type: kwok}}
status:
  allocatable: {{cpu: "32", memory: 256Gi, pods: "110"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "110"}}
"""


def create_fake_node(kubeconfig: str) -> None:
    """A kwok-managed Node, so scheduled pods become Running and Ready without a kubelet."""
    subprocess.run(
        [str(bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", "apply", "-f", "-"],
        input=FAKE_NODE_MANIFEST.encode(),
        check=True,
        capture_output=True,
    )


def install_crd(env: dict[str, str], path: Path, name: str = "datapipelines.sluice.dev", timeout: float = 60) -> None:
    """Server-side applies the CRD(s) at `path` (a file or a directory) and waits until `name` is Established.

    Not `kubectl wait --for=condition=Established`: on a CRD so new that its status has no conditions yet, kubectl
    1.34 fails at once ("accessor error: <nil> is of the type <nil>").
    """
    kubectl = [str(bin_dir() / "kubectl")]
    subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(path)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    established = '{.status.conditions[?(@.type=="Established")].status}'
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([*kubectl, "get", f"crd/{name}", "-o", f"jsonpath={established}"], env=env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode == 0 and done.stdout == "True":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the CRD {name} was not established within {timeout:.0f} s: {done.stderr.strip()}")
        time.sleep(0.2)
