"""The operator image starts against the local API server, read-only and unprivileged, answers its liveness
probe, and stops cleanly on `docker stop`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sluice_stack.process import free_port

from .docker import REPO, Container, Images, docker, unlocked_packages

pytestmark = pytest.mark.kube

HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def test_image_metadata(images: Images) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", images.operator))
    assert config["User"] == "10001:10001"
    # The user's own group is 10001 too: where a pod's group comes from /etc/passwd, it is not 999.
    who = docker("run", "--rm", "--entrypoint", "id", images.operator, "sluice")
    assert who == "uid=10001(sluice) gid=10001(sluice) groups=10001(sluice)", who
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "sluice-operator"]
    assert config["Labels"]["org.opencontainers.image.title"] == "sluice-operator"
    size = int(docker("image", "inspect", "-f", "{{.Size}}", images.operator))
    print(f"{images.operator}: {size / 1e6:.0f} MB")
    # Its Python packages are the versions constraints.txt locks, the ones the suite ran against.
    assert unlocked_packages(images.operator) == {}


def kubectl(kube, *args: str) -> str:  # type: ignore[no-untyped-def]
    return subprocess.run(["kubectl", *args], env=kube.env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def namespace(kube) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"img-{uuid.uuid4().hex[:8]}"
    kubectl(kube, "create", "namespace", name)
    yield name
    kubectl(kube, "delete", "namespace", name, "--wait=false")


def test_operator_container_answers_its_liveness_probe(  # type: ignore[no-untyped-def]
    images: Images, kube, namespace: str, tmp_path: Path
) -> None:
    kubectl(kube, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    # A self-contained kubeconfig (the CA inline), readable by the image's user.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubectl(kube, "config", "view", "--raw", "--flatten", "--minify"))
    kubeconfig.chmod(0o644)
    port = free_port()
    container = Container(
        f"operator-{namespace}", images.operator, "--network", "host", *HARDENED,
        "-v", f"{kubeconfig}:/etc/sluice/kubeconfig:ro", "-e", "KUBECONFIG=/etc/sluice/kubeconfig",
        "-e", f"SLUICE_WATCH_NAMESPACES={namespace}", "-e", f"SLUICE_LEASE_NAMESPACE={namespace}",
        "-e", "SLUICE_LIVENESS_HOST=127.0.0.1", "-e", f"SLUICE_LIVENESS_PORT={port}",
    )  # fmt: skip
    try:
        container.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert docker("exec", container.name, "cat", "/proc/1/comm") == "tini"
        seconds = container.stop(30)
        print(f"docker stop -t 30: exited in {seconds:.1f}s")
        assert container.exit_code() == 0, container.logs()
        assert seconds < 10, f"took {seconds:.1f}s to stop:\n{container.logs()}"
    finally:
        container.remove()
