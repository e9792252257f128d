"""The naive loop, shaped like the talk's: per message parse, a synchronous insert, a synchronous commit.

It is given its best shot otherwise (the same prepared insert, the same department table), and it runs on
a prefix of the topic (`--naive-messages`, default 10,000) because at its speed all N would take too long;
its table must then hold exactly that many rows.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel  # type: ignore[attr-defined]
from cassandra.cluster import Cluster
from confluent_kafka import Consumer

from ..workload import Pipeline
from . import Context, Result, report_window, run_child

TITLE = "naive loop (parse, sync insert, sync commit)"


def run(ctx: Context, count: int) -> Result:
    count = min(count, ctx.messages)
    table = ctx.tables.fresh(f"naive_{ctx.run_id}")
    args = {
        "bootstrap": ctx.bootstrap,
        "contact_point": ctx.contact_point,
        "topic": ctx.topic,
        "group": f"bench-naive-{ctx.run_id}",
        "table": table,
        "count": count,
    }
    with ctx.recorder() as recorder:
        window, _ = run_child("naive", args, recorder, ctx.workdir / "naive.log")
    rows = ctx.tables.check(table, count)
    detail = f"first {count:,} messages" if count < ctx.messages else ""
    return Result("naive", TITLE, window, recorder.between(window.start, window.end), rows, detail=detail)


def main(args: dict[str, Any]) -> None:
    pipeline = Pipeline.example()
    host, port = args["contact_point"].rsplit(":", 1)
    session = Cluster([host], port=int(port)).connect()
    insert = session.prepare(pipeline.insert_cql(args["table"]))
    insert.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    consumer = Consumer(
        {
            "bootstrap.servers": args["bootstrap"],
            "group.id": args["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args["topic"]])
    done, start = 0, 0.0
    while done < args["count"]:
        message = consumer.poll(1.0)
        if message is None or message.error() or message.value() is None:
            continue
        start = start or time.monotonic()
        event = json.loads(message.value() or b"")
        name = event["item"]["name"]
        _, timestamp_ms = message.timestamp()
        columns = {
            "id": event["id"],
            "item_name": name,
            "price": float(event["item"]["price"]),
            "event_time": datetime.fromtimestamp(timestamp_ms / 1000, UTC),
            "department": pipeline.department(name),
        }
        write_time = timestamp_ms * 1000 + (message.offset() or 0) % 1000
        session.execute(insert, (*(columns[c] for c in pipeline.insert_columns), write_time))
        consumer.commit(message=message, asynchronous=False)
        done += 1
    end = time.monotonic()
    consumer.close()
    session.cluster.shutdown()
    report_window(done, start, end)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
