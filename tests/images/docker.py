"""Small helpers over the `docker` command line, shared by the image, chart and kind suites."""

from __future__ import annotations

import os
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.locked import locked_versions, normalise

REPO = Path(__file__).resolve().parents[2]


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Runs `docker ARGS`; returns stdout, and fails with stderr if it fails."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def ensure_docker() -> None:
    """A running Docker engine (Debian's docker.io), installed and started by hack/ensure-docker.sh."""
    subprocess.run(["bash", str(REPO / "hack" / "ensure-docker.sh")], check=True, timeout=600)


@dataclass(frozen=True)
class Images:
    worker: str
    operator: str


def unlocked_packages(image: str) -> dict[str, tuple[str, str | None]]:
    """The image's Python distributions (but sluice) whose version is not the one constraints.txt locks:
    {name: (installed, locked)}. Empty when the image carries what CI tested."""
    script = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'], d.version)"
    listing = docker("run", "--rm", "--entrypoint", "/opt/sluice/bin/python", image, "-c", script)
    installed = dict(line.split(" ", 1) for line in listing.splitlines())
    assert "sluice" in installed, listing  # the listing is the image's venv, not the base's Python
    locked = locked_versions()
    return {
        name: (version, locked.get(normalise(name)))
        for name, version in installed.items()
        if name != "sluice" and locked.get(normalise(name)) != version
    }


def build_images() -> Images:
    """Both images as a user builds them: `hack/build-images.sh` (base image, wheelhouse, docker build)."""
    done = subprocess.run(
        ["bash", str(REPO / "hack" / "build-images.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"hack/build-images.sh failed:\n{done.stderr[-4000:]}"
    print(done.stderr)  # the build times and sizes, shown with -s or on failure
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    tag = os.environ.get("SLUICE_IMAGE_TAG", version)
    return Images(worker=f"sluice-worker:{tag}", operator=f"sluice-operator:{tag}")


def http_status(url: str) -> int:
    """The HTTP status of a GET, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Container:
    """A detached container with a unique name, removed by `remove()`."""

    def __init__(self, name: str, image: str, *run_args: str, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.id = docker("run", "-d", "--name", name, *run_args, image, *args)

    def running(self) -> bool:
        return docker("inspect", "-f", "{{.State.Running}}", self.name) == "true"

    def exit_code(self) -> int:
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.name))

    def logs(self, tail: int = 80) -> str:
        command = ["docker", "logs", "--tail", str(tail), self.name]
        done = subprocess.run(command, capture_output=True, text=True)
        return done.stdout + done.stderr

    def wait_http(self, url: str, timeout: float = 90) -> None:
        """Until `url` answers 200, failing early (with the logs) if the container exits."""
        deadline = time.monotonic() + timeout
        while http_status(url) != 200:
            assert self.running(), f"{self.name} exited with {self.exit_code()}:\n{self.logs()}"
            assert time.monotonic() < deadline, f"{url} not 200 after {timeout:.0f}s:\n{self.logs()}"
            time.sleep(0.5)

    def stop(self, timeout: int) -> float:
        """`docker stop -t TIMEOUT` (SIGTERM, then SIGKILL after TIMEOUT); returns the seconds it took."""
        started = time.monotonic()
        docker("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)
