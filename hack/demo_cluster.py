"""`make demo-cluster`: Gophers R Us in a real Kubernetes (kind, built here) — chart, Kafka, Cassandra, events, rows."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from sluice_stack.config import REPO_DIR
from sluice_stack.kind import DATA, Cluster, build_images, sample_pipeline

NAME = "sluice-demo"
WORKDIR = REPO_DIR / "build" / "kind-demo"
TOPIC, TABLE = "store-events", "store.store_events"


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000, help="store events to produce")
    parser.add_argument("--delete", action="store_true", help="delete the demo cluster and exit")
    args = parser.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)

    if args.delete:
        Cluster(NAME, WORKDIR).delete()
        step(f"deleted the kind cluster {NAME}")
        return 0
    step("building the images (kept when present: make kind-image)")
    images = build_images()
    cluster = Cluster(NAME, WORKDIR)
    step(f"creating the kind cluster {NAME} from {images['node']}")
    cluster.create()
    step("installing the chart and starting Kafka and Cassandra in the cluster")
    cluster.install(images)
    cluster.toolbox("create-topic", TOPIC, "3")
    step("applying examples/gophers-r-us.yaml (pointed at the in-cluster Kafka and Cassandra)")
    cluster.apply(sample_pipeline())
    cluster.kubectl("wait", "dp/gophers-r-us", "--for=condition=Ready", "--timeout=300s", timeout=320)
    step(f"producing {args.events:,} store events to {TOPIC}")
    started = time.monotonic()
    cluster.toolbox("produce", TOPIC, "0", str(args.events))
    wait(f"{args.events} rows", lambda: cluster.toolbox("rows", TABLE)["count"] >= args.events, timeout=600)
    seconds = time.monotonic() - started
    step(f"{args.events:,} events became rows in {seconds:.1f}s (produce to last row, through kubectl exec)")

    print("\nrows per department:")
    for department, count in cluster.toolbox("departments", TABLE).items():
        print(f"  {department:<10} {count:>7,}")
    print()
    print(cluster.kubectl("get", "dp,deploy,pods", "-n", "default", "-o", "wide"))
    print(cluster.kubectl("get", "pods", "-n", DATA))
    print(f"the cluster keeps running:  export KUBECONFIG={cluster.kubeconfig_path}")
    print("                            kubectl describe dp gophers-r-us; kubectl scale dp/gophers-r-us --replicas=3")
    print("delete it with:             make demo-cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
