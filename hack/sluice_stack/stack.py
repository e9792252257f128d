"""The local stack: which servers make it up, starting them in order, and the env file tests and shells read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cassandra, kafka, kube, oidc, registry
from .config import HACK_DIR
from .process import Service, load_services, save_services, wait_for

# Each group of servers, in start order, and how long each may take to become ready. Kafka and Cassandra are one
# node each, or with SLUICE_STACK_NODES=3 three of each (`kafka-1`..., `cassandra-1`...).
GROUPS: dict[str, tuple[str, ...]] = {
    "kafka": ("kafka",),
    "cassandra": ("cassandra",),
    "cassandra-secure": (cassandra.SECURE_NAME,),  # TLS and a login; in tests, started by those using it
    "registry": (registry.NAME,),  # a schema registry for Avro; in tests, started by those using it
    "kube": ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"),
}
CLUSTERED = ("kafka", "cassandra")
READY_TIMEOUT = {"kafka": 120.0, "cassandra": 180.0, cassandra.SECURE_NAME: 180.0, registry.NAME: 120.0}
# Groups `up` leaves out unless named: they serve their own tests only.
ON_DEMAND = ("cassandra-secure", "registry")
# What `python -m sluice_stack FAULT SERVER` does to a server of a running stack.
FAULTS = ("pause", "resume", "kill", "restart")


def kind_of(name: str) -> str:
    """`cassandra-2` -> `cassandra`; other names are their own kind."""
    base, _, number = name.rpartition("-")
    return base if base in CLUSTERED and number.isdigit() else name


def nodes_from_env() -> int:
    nodes = int(os.environ.get("SLUICE_STACK_NODES", "1"))
    if nodes not in (1, 3):
        raise ValueError(f"SLUICE_STACK_NODES={nodes}: the stack runs 1 or 3 nodes of Kafka and Cassandra")
    return nodes


def _is_ready(service: Service) -> bool:
    checks: dict[str, Callable[[Service], bool]] = {
        "kafka": kafka.is_ready, "cassandra": cassandra.is_ready, cassandra.SECURE_NAME: cassandra.is_ready,
        registry.NAME: registry.is_ready, oidc.NAME: oidc.is_ready,
    }  # fmt: skip
    return checks.get(kind_of(service.name), kube.is_ready)(service)


def provision(groups: Iterable[str]) -> None:
    """Builds or fetches what `groups` need into the cache (a no-op when cached)."""
    groups = set(groups)
    if "kube" in groups:
        subprocess.run([str(HACK_DIR / "build-kubernetes.sh"), "all"], check=True)
    if "kafka" in groups:
        kafka.provision()
    if groups & {"cassandra", "cassandra-secure"}:
        cassandra.provision()
    if "registry" in groups:
        registry.provision()


class Stack:
    """The servers under one root folder: `root/logs/<server>.log`, `root/data/`, `root/state.json`."""

    def __init__(self, root: Path, services: dict[str, Service] | None = None, nodes: int | None = None) -> None:
        self.root = root
        self.services: dict[str, Service] = services or {}
        clustered = sum(kind_of(name) == "cassandra" for name in self.services)
        self.nodes = nodes or clustered or nodes_from_env()

    def members(self, group: str) -> tuple[str, ...]:
        """The servers of `group`: e.g. `kafka`, or `kafka-1`, `kafka-2`, `kafka-3`."""
        if group in CLUSTERED and self.nodes > 1:
            return tuple(f"{group}-{n}" for n in range(1, self.nodes + 1))
        return GROUPS[group]

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @classmethod
    def attach(cls, root: Path) -> Stack | None:
        """The stack a `make stack-up` left running under `root`, if all of its servers are alive."""
        stack = cls.load(root)
        if stack is None or not all(s.alive for s in stack.services.values()):
            return None
        return stack

    @classmethod
    def load(cls, root: Path) -> Stack | None:
        """The stack a `make stack-up` made under `root`, alive or not (a fault may have killed a server)."""
        state = root / "state.json"
        services = load_services(state) if state.exists() else {}
        return cls(root, services) if services else None

    def has(self, group: str) -> bool:
        return all(name in self.services for name in self.members(group))

    def up(self, groups: Iterable[str]) -> None:
        """Provisions, configures and starts the servers of `groups` that are not running yet."""
        wanted = [g for g in GROUPS if g in set(groups) and not self.has(g)]
        provision(wanted)
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
            for future in [pool.submit(self._start_group, g) for g in wanted]:
                future.result()
        self.save()

    def _start_group(self, group: str) -> None:
        if group == "kafka":
            services = {s.name: s for s in kafka.make_services(self.root, self.nodes)}
        elif group == "cassandra":
            services = {s.name: s for s in cassandra.make_services(self.root, self.nodes)}
        elif group == "cassandra-secure":
            services = {cassandra.SECURE_NAME: cassandra.make_secure_service(self.root)}
        elif group == "registry":
            services = {registry.NAME: registry.make_service(self.root)}
        else:
            services = kube.make_services(self.root)
        self.services.update(services)
        if group == "kafka" and self.nodes > 1:
            # Together: a node elects a controller (and answers) only once a majority of the voters runs.
            for service in services.values():
                service.start()
            for name in services:
                self.start(name, already_started=True)
        elif group == "cassandra" and self.nodes > 1:
            # The seed first: the others join the ring through it. They then start together, which is safe because
            # none bootstraps (auto_bootstrap: false, each has its own fixed token).
            seed, *others = services
            self.start(seed)
            for name in others:
                services[name].start()
            for name in others:
                self.start(name, already_started=True)
        else:
            for name in services:
                self.start(name)
        if group == "kube":
            kube.create_fake_node(self.kubeconfig)

    def start(self, name: str, already_started: bool = False) -> float:
        """Starts one server and waits until it answers; returns and records the seconds that took."""
        service = self.services[name]
        started = time.monotonic()
        if not already_started:
            service.start()
        try:
            wait_for(lambda: service.alive and _is_ready(service), READY_TIMEOUT.get(kind_of(name), 90.0), name)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- last lines of {service.log_path}:\n{service.tail()}") from None
        service.start_seconds = round(time.monotonic() - started, 1)
        return service.start_seconds

    def restart(self, name: str) -> float:
        """Kills the server (SIGKILL) and starts it again on the same ports and data."""
        self.services[name].kill()
        seconds = self.start(name)
        self.save()
        return seconds

    def inject(self, fault: str, name: str, seconds: float = 0) -> str:
        """One of FAULTS on one server, as the talk did by hand; says what happened."""
        service = self.services[name]
        if fault == "pause":
            service.pause()
            if not seconds:
                return f"{name} paused (SIGSTOP): it keeps its sockets and answers nothing until `resume {name}`"
            time.sleep(seconds)
            service.resume()
            return f"{name} paused for {seconds:g}s, then resumed"
        if fault == "resume":
            service.resume()
            return f"{name} resumed (SIGCONT)"
        if fault == "kill":
            service.kill()
            return f"{name} killed (SIGKILL); `restart {name}` starts it again on its data"
        if fault == "restart":
            return f"{name} killed and started again on its data; answering after {self.restart(name)}s"
        raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")

    def down(self) -> None:
        """Kills every server and removes their data (logs stay for post-mortems): with the data gone, a graceful
        stop (Cassandra's drain, Kafka's controlled shutdown) would only take time."""
        for name in reversed(list(self.services)):
            self.services[name].kill()
        self.services.clear()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        (self.root / "env").unlink(missing_ok=True)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        save_services(self.state_file, self.services)
        env = self.env()
        if "PATH" in env:  # the file prepends to the PATH of the shell that sources it
            env["PATH"] = env["PATH"].replace(os.environ.get("PATH", ""), "$PATH")
        (self.root / "env").write_text("".join(f"export {k}={json.dumps(v)}\n" for k, v in env.items()))

    @property
    def kubeconfig(self) -> str:
        return self.services["kube-apiserver"].endpoints["kubeconfig"]

    def env(self) -> dict[str, str]:
        """What `.stack/env` exports: endpoints, pids, and PATH with the built kubectl and helm first."""
        env: dict[str, str] = {"SLUICE_STACK_DIR": str(self.root)}
        if self.has("kafka"):
            brokers = [self.services[name] for name in self.members("kafka")]
            env["KAFKA_BOOTSTRAP_SERVERS"] = ",".join(s.endpoints["bootstrap"] for s in brokers)
            env["SLUICE_KAFKA_PID"] = ",".join(str(s.pid) for s in brokers)
            if "sasl_ssl" in brokers[0].endpoints:  # the secured listeners (single node): README "Security"
                user, password = kafka.SCRAM_USER
                env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"] = brokers[0].endpoints["sasl_ssl"]
                env["KAFKA_MTLS_BOOTSTRAP_SERVERS"] = brokers[0].endpoints["mtls"]
                env["KAFKA_SCRAM_USERNAME"], env["KAFKA_SCRAM_PASSWORD"] = user, password
                env["SLUICE_STACK_TLS_DIR"] = brokers[0].endpoints["tls_dir"]
            if oidc.NAME in self.services:  # the OAUTHBEARER listener and its token endpoint
                env["KAFKA_OAUTH_BOOTSTRAP_SERVERS"] = brokers[0].endpoints["oauth"]
                env["OAUTH_TOKEN_ENDPOINT"] = self.services[oidc.NAME].endpoints["token"]
                env["OAUTH_CLIENT_ID"], env["OAUTH_CLIENT_SECRET"] = oidc.CLIENT
        if self.has("cassandra"):
            nodes = [self.services[name] for name in self.members("cassandra")]
            env["CASSANDRA_CONTACT_POINTS"] = ",".join(s.endpoints["contact_point"] for s in nodes)
            env["SLUICE_CASSANDRA_PID"] = ",".join(str(s.pid) for s in nodes)
        if cassandra.SECURE_NAME in self.services:
            secure = self.services[cassandra.SECURE_NAME]
            env["CASSANDRA_SECURE_CONTACT_POINT"] = secure.endpoints["contact_point"]
            env["CASSANDRA_SECURE_USERNAME"], env["CASSANDRA_SECURE_PASSWORD"] = cassandra.LOGIN
            env["SLUICE_STACK_TLS_DIR"] = secure.endpoints["tls_dir"]
        if registry.NAME in self.services:
            env["SCHEMA_REGISTRY_URL"] = self.services[registry.NAME].endpoints["url"]
        if "kube-apiserver" in self.services:
            env["KUBECONFIG"] = self.kubeconfig
            tools = ":".join(str(d) for d in kube.tool_dirs())
            env["PATH"] = f"{tools}:{os.environ.get('PATH', '')}"
        return env

    def report(self) -> str:
        return "\n".join(
            f"  {name:<24} pid {s.pid:<8} ready in {s.start_seconds}s   log {s.log_path}"
            for name, s in self.services.items()
        )
