"""The consume ceiling: raw confluent-kafka consumption of the run's topic by one process, writing nothing.

Its clock starts when the partitions are assigned, not at the first message: librdkafka prefetches whole
partitions in the background, so by the first message a small topic is already in memory.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from confluent_kafka import Consumer

from . import Context, Result, report_window, run_child

TITLE = "consume ceiling (confluent-kafka, no writes)"


def run(ctx: Context) -> Result:
    args = {
        "bootstrap": ctx.bootstrap,
        "topic": ctx.topic,
        "group": f"bench-consume-{ctx.run_id}",
        "count": ctx.messages,
    }
    with ctx.recorder() as recorder:
        window, _ = run_child("consume", args, recorder, ctx.workdir / "consume.log")
    return Result("consume", TITLE, window, recorder.between(window.start, window.end), rows_checked=None,
                  rows_per_message=0)  # fmt: skip


def main(args: dict[str, Any]) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": args["bootstrap"],
            "group.id": args["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assigned: list[float] = []
    consumer.subscribe([args["topic"]], on_assign=lambda *_: assigned.append(time.monotonic()))
    wanted, count, size = args["count"], 0, 0
    while count < wanted:
        batch = consumer.consume(500, timeout=1.0)
        for message in batch:
            if message.error() is None:
                size += len(message.value() or b"")
                count += 1
    end = time.monotonic()
    consumer.close()
    report_window(count, assigned[0], end, bytes=size)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
