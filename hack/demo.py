"""`make demo`: Gophers R Us end to end on the local stack — produce store events, run the worker, report."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cassandra.cluster import Cluster
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sluice_stack import Stack
from sluice_stack.config import REPO_DIR
from sluice_stack.kafka import CLIENT_LOG, log_clients_to
from sluice_stack.kube import install_crd

EXAMPLE = REPO_DIR / "examples" / "gophers-r-us.yaml"
ITEMS = [
    "blue-gopher",
    "pink-gopher",
    "purple-gopher",
    "gophercon-us-sticker",
    "gosf-sticker",
    "gophercon-uk-sticker",
    "gophercon-us-shirt",
    "gophercon-uk-shirt",
    "gopher-mug",
    "laptop-bag",
]
TOPIC, GROUP = "store-events", "default.gophers-r-us"


def progress(label: str, done: int, total: int) -> None:
    width = 40
    filled = width * done // total
    print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}", end="", file=sys.stderr)
    if done == total:
        print(file=sys.stderr)


def fresh_topic(bootstrap: str, partitions: int) -> None:
    """Starts the demo from an empty topic and no committed offsets, so the counts are this run's."""
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=CLIENT_LOG)
    if TOPIC in admin.list_topics(timeout=10).topics:
        admin.delete_topics([TOPIC])[TOPIC].result(30)
        while TOPIC in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
    with __import__("contextlib").suppress(Exception):
        admin.delete_consumer_groups([GROUP])[GROUP].result(30)
    for _ in range(50):  # the broker may still be finishing the deletion
        try:
            admin.create_topics([NewTopic(TOPIC, partitions, 1)])[TOPIC].result(30)
            return
        except Exception:
            time.sleep(0.2)


def produce(bootstrap: str, count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True, "logger": CLIENT_LOG}
    )
    for i in range(count):
        event = {
            "id": f"evt-{i:07d}",
            "item": {"name": random.choice(ITEMS), "price": round(random.uniform(2, 40), 2)},
            "store": random.choice(["sf", "nyc", "london"]),
        }
        while True:
            try:
                producer.produce(TOPIC, key=event["id"].encode(), value=json.dumps(event).encode())
                break
            except BufferError:
                producer.poll(0.1)
        if i % 1000 == 0 or i == count - 1:
            producer.poll(0)
            progress("producing store events", i + 1, count)
    producer.flush(60)


def kubectl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True).stdout


def run_operator(stack: Stack) -> str:
    """Installs the CRD, runs sluice-operator, applies the example; returns `kubectl get` of what it made."""
    env = {**os.environ, **stack.env()}
    install_crd(env, REPO_DIR / "crds")
    log = REPO_DIR / ".stack" / "logs" / "demo-operator.log"
    operator_env = {
        **env,
        "SLUICE_LEADER_ELECTION": "false",
        "SLUICE_LIVENESS_HOST": "127.0.0.1",
        "SLUICE_LIVENESS_PORT": "0",
        "SLUICE_LAG_INTERVAL_SECONDS": "5",
    }
    print(f"running sluice-operator (log: {log}) and applying {EXAMPLE.relative_to(REPO_DIR)}", file=sys.stderr)
    with open(log, "w") as out:
        operator = subprocess.Popen(
            [str(Path(sys.executable).with_name("sluice-operator"))],
            env=operator_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        kubectl(env, "apply", "-f", str(EXAMPLE))
        kubectl(env, "wait", "--for=condition=Ready", "--timeout=120s", "dp/gophers-r-us")
        shown = kubectl(env, "get", "dp", "gophers-r-us")
        return shown + "\n" + kubectl(env, "get", "deployment,configmap", "-l", "sluice.dev/pipeline=gophers-r-us")
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    stack = Stack.attach(REPO_DIR / ".stack")
    if stack is None or not all(stack.has(group) for group in ("kafka", "cassandra", "kube")):
        print("no local stack: run `make stack-up` first", file=sys.stderr)
        return 1
    log_clients_to(REPO_DIR / ".stack" / "logs" / "demo-kafka-clients.log")
    reconciled = run_operator(stack)
    env = stack.env()
    bootstrap, contact = env["KAFKA_BOOTSTRAP_SERVERS"], env["CASSANDRA_CONTACT_POINTS"]
    host, port = contact.rsplit(":", 1)
    session = Cluster([host], port=int(port)).connect()
    if (
        session.cluster.metadata.keyspaces.get("store", None)
        and "store_events" in session.cluster.metadata.keyspaces["store"].tables
    ):
        session.execute("TRUNCATE store.store_events")

    fresh_topic(bootstrap, args.partitions)
    produce(bootstrap, args.events)

    log = REPO_DIR / ".stack" / "logs" / "demo-worker.log"
    worker_env = {
        **os.environ,
        "SLUICE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SLUICE_CASSANDRA_CONTACT_POINTS": contact,
        "SLUICE_HTTP_HOST": "127.0.0.1",
        "SLUICE_HTTP_PORT": "0",
    }
    print(f"running sluice-worker --pipeline {EXAMPLE.relative_to(REPO_DIR)} (log: {log})", file=sys.stderr)
    started = time.monotonic()
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("sluice-worker")), "--pipeline", str(EXAMPLE)],
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    written = 0
    try:
        while written < args.events:
            if worker.poll() is not None:
                print(f"\nthe worker exited with {worker.returncode}; see {log}", file=sys.stderr)
                return 1
            time.sleep(0.5)
            try:
                written = session.execute("SELECT count(*) FROM store.store_events", timeout=30).one()[0]
            except Exception:
                continue  # the worker is still creating the table
            progress("rows written to Cassandra", min(written, args.events), args.events)
        elapsed = time.monotonic() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)

    departments = Counter(row.department for row in session.execute("SELECT department FROM store.store_events"))
    print("\nrows per department")
    for department, count in departments.most_common():
        print(f"  {department:<10} {count:>8,}")
    print(f"  {'total':<10} {sum(departments.values()):>8,}")
    print(
        f"\n{args.events:,} messages in {elapsed:.1f}s = {args.events / elapsed:,.0f} messages/s "
        f"(worker start to last durable row; includes connecting and joining the group)"
    )
    print(f"worker exited with code {code} after SIGTERM")
    print("\nthe operator's side: the DataPipeline and the Deployment it reconciled (pods run on a kwok node)")
    print(reconciled)
    session.cluster.shutdown()
    return 0 if code == 0 and sum(departments.values()) == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
