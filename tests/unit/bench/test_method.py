"""How `make bench` places processes, picks the reported run of several and judges its targets (bench/)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench.measure import CpuUse, Window
from bench.placement import Placement
from bench.run import median_run
from bench.systems import Result
from bench.systems.operator import Latency, Scale, is_ready, requests_in


@contextlib.contextmanager
def metrics_at(body: bytes) -> Iterator[str]:
    """A /metrics endpoint on loopback answering `body`, as a system under measure serves its counters: its URL."""

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()


def test_cassandra_gets_the_lower_half_and_clients_the_rest() -> None:
    assert Placement.split({0, 1}) == Placement(frozenset({0}), frozenset({1}))
    assert Placement.split({0, 1, 2, 3, 4}) == Placement(frozenset({0, 1}), frozenset({2, 3, 4}))
    assert Placement.split({0, 1}).describe() == "Cassandra on CPU 0; Kafka and each measured client on CPU 1"


def test_pinning_one_cpu_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValueError, match="--placement shared"):
        Placement.split({3})


def _run(rate: int) -> Result:
    window = Window(count=rate * 10, start=100.0, end=110.0, launched=99.0)
    return Result("sluice", "sluice-worker (1 process)", window, CpuUse({}, 0.5, 10.0), rate * 10, detail="as shipped")


def test_the_median_run_is_reported_with_every_rate() -> None:
    reported = median_run([_run(12_000), _run(14_000), _run(13_000)])
    assert reported.window.rate == pytest.approx(13_000)
    assert reported.extra["runs"] == [12_000, 14_000, 13_000]
    assert reported.detail == "as shipped; median of 12,000 / 14,000 / 13,000"


def test_of_an_even_count_the_lower_middle_run_is_reported() -> None:
    assert median_run([_run(9_000), _run(11_000)]).window.rate == pytest.approx(9_000)


def test_a_single_run_is_reported_as_it_is() -> None:
    only = _run(10_000)
    assert median_run([only]) is only


def test_a_metric_is_summed_over_its_labels_or_read_for_one() -> None:
    from bench.measure import scrape

    body = (
        b"# HELP sluice_rows_written_total Rows\n"
        b'sluice_rows_written_total{table="a"} 3.0\n'
        b'sluice_rows_written_total{table="b"} 4.0\n'
        b"sluice_messages_consumed_total 9.0\n"
    )
    one = 'sluice_rows_written_total{table="b"}'
    with metrics_at(body) as url:
        got = scrape(url, ("sluice_rows_written_total", one, "sluice_messages_consumed_total", "missing_total"))
    assert got == {"sluice_rows_written_total": 7.0, one: 4.0, "sluice_messages_consumed_total": 9.0,
                   "missing_total": 0.0}  # fmt: skip


def test_cassandra_cost_is_per_row_written_so_two_tables_count_twice() -> None:
    window = Window(count=1_000, start=0.0, end=1.0, launched=0.0)
    cpu = CpuUse({"cassandra": 0.2, "process": 0.1}, 0.9, 1.0)
    one = Result("sluice", "one table", window, cpu, 1_000)
    two = Result("two_tables", "two tables", window, cpu, 1_000, rows_per_message=2)
    reads = Result("consume", "no writes", window, cpu, None, rows_per_message=0)
    assert one.cassandra_us_per_row == pytest.approx(200.0)
    assert two.cassandra_us_per_row == pytest.approx(100.0)
    assert reads.cassandra_us_per_row is None


def test_memory_of_a_live_process_and_none_once_it_is_gone() -> None:
    import os
    import subprocess
    import sys

    from bench.systems import Memory

    own = Memory.of(os.getpid())
    assert own is not None and 0 < own.rss_bytes <= own.peak_rss_bytes
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert Memory.of(child.pid) is None


def test_targets_below_and_above_are_judged_each_their_way() -> None:
    from bench.report import TARGETS, summary, table

    def result(key: str, seconds: float, cpu: float, cassandra: float) -> Result:
        return Result(key, key, Window(10_000, 0.0, seconds, 0.0), CpuUse({"process": cpu, "cassandra": cassandra},
                      0.9, seconds), 10_000)  # fmt: skip

    results = {
        "sluice": result("sluice", 2.0, 1.0, 0.6),  # 5,000 msgs/s, 0.1 CPU s/1k, 60 us/row
        "benthos_tuned": replace(
            result("benthos_tuned", 2.5, 2.0, 0.7),  # 4,000 msgs/s, 0.2 CPU s/1k, 70 us/row
            extra={"best": {"batch": 50, "in_flight": 32}, "trials": []},
        ),
    }
    got = summary(results, 10_000, 3, None, None, None, "not measured", None)
    assert got["ratio_to_benthos_tuned"] == 1.25
    assert got["cpu_ratio_to_benthos_tuned"] == 0.5
    assert got["cassandra_us_per_row"] == {"sluice": 60.0, "benthos_tuned": 70.0}
    assert got["cassandra_cost_ratio_to_benthos_tuned"] == 0.857
    assert TARGETS["cpu_ratio_to_benthos_tuned"] == ("<=", 0.8)
    lines = table(results, got, None).splitlines()
    assert next(line for line in lines if line.startswith("cpu_ratio_to_benthos_tuned")).endswith("met")
    assert next(line for line in lines if line.startswith("ratio_to_benthos_tuned")).endswith("met")
    assert next(line for line in lines if line.startswith("ratio_to_ceiling")).endswith("n/a")


def test_the_operators_api_requests_are_read_from_the_api_servers_own_count() -> None:
    metrics = "\n".join([
        "# TYPE apiserver_request_total counter",
        'apiserver_request_total{code="201",component="apiserver",dry_run="",group="apps",resource="deployments",'
        'scope="resource",subresource="",verb="APPLY",version="v1"} 1000',
        'apiserver_request_total{code="200",component="apiserver",dry_run="",group="sluice.dev",'
        'resource="datapipelines",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 1010',
        'apiserver_request_total{code="409",component="apiserver",dry_run="",group="sluice.dev",'
        'resource="datapipelines",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 2',
        'apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",'
        'scope="cluster",subresource="",verb="WATCH",version="v1"} 7',
        'apiserver_request_duration_seconds_count{verb="GET",resource="pods"} 99',
    ])  # fmt: skip
    counted = requests_in(metrics)
    assert counted == {"APPLY deployments": 1000, "PATCH datapipelines/status": 1012}
    scale = Scale(
        pipelines=1000, apply_seconds=1, seconds=2, operator_cpu_seconds=1, peak_rss_bytes=1, requests=counted
    )
    assert scale.requests_per_pipeline() == 2.012 and scale.requests_per_pipeline(["APPLY"]) == 1.0


def test_latency_quantiles_are_nearest_rank() -> None:
    latency = Latency(present=1000, seconds=tuple(float(n) for n in range(50, 0, -1)))
    assert latency.quantile(0.5) == 25.0 and latency.quantile(0.99) == 50.0 and latency.quantile(0.0) == 1.0


def test_latency_is_measured_once_every_pipeline_is_ready_for_its_generation() -> None:
    ready = {"type": "Ready", "status": "True"}
    assert is_ready({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [ready]}})
    assert not is_ready({"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [ready]}})
    not_ready = {**ready, "status": "False"}
    assert not is_ready({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [not_ready]}})
    assert not is_ready({"metadata": {"generation": 1}})


def test_a_request_shape_changes_only_what_it_names_in_the_bound_values() -> None:
    from cassandra.query import UNSET_VALUE

    from bench.systems.shapes import SHAPES_BY_KEY, shaped_rows

    rows = [("e1", "purple-gopher", 9.5, "gophers", 1_700_000_000_000)]
    assert shaped_rows(rows, SHAPES_BY_KEY["worker"], price_at=2) == rows
    assert shaped_rows(rows, SHAPES_BY_KEY["no_timestamp"], price_at=2) == [("e1", "purple-gopher", 9.5, "gophers")]
    assert shaped_rows(rows, SHAPES_BY_KEY["price_null"], price_at=2) == [
        ("e1", "purple-gopher", None, "gophers", 1_700_000_000_000)
    ]
    assert shaped_rows(rows, SHAPES_BY_KEY["price_unset"], price_at=2)[0][2] is UNSET_VALUE


def test_request_shapes_are_compared_with_the_workers_shape_round_by_round() -> None:
    from bench.systems.shapes import Shapes

    found = Shapes(rows=1_000)
    for worker, batched in ((100.0, 80.0), (90.0, 81.0), (110.0, 120.0)):
        found.add("batch_100", batched, 10_000.0)
        found.add("worker", worker, 9_000.0)
    assert found.median("worker") == 100.0
    assert found.median("batch_100") == 81.0
    assert found.relative("batch_100") == 0.9  # round by round: 0.8, 0.9, 1.09 (the rounds drift together)
    assert found.summary()["cassandra_us_per_row_by_shape"] == {"batch_100": 81.0, "worker": 100.0}
    lines = found.table().splitlines()
    assert lines[3].startswith("batches of 23 rows (3.8 KiB), 64 in flight") and "100 / 90 / 110" in lines[3]
    assert lines[4].startswith("batches of 100 rows") and " 0.90 " in lines[4]


def test_rows_per_request_is_rows_written_over_requests_counted() -> None:
    from bench.measure import Progress

    body = b"sluice_rows_written_total 230.0\nsluice_write_latency_seconds_count 10.0\noutput_batch_sent 0.0\n"
    with metrics_at(body) as url:
        counted = Progress(url, "consumed", "sluice_rows_written_total", "sluice_write_latency_seconds_count")
        assert counted.rows_per_request() == 23.0
        assert Progress(url, "consumed", "sluice_rows_written_total", "output_batch_sent").rows_per_request() is None
        assert Progress(url, "consumed", "sluice_rows_written_total").rows_per_request() is None


def test_cassandras_batch_size_lines_are_counted_from_where_the_system_started(tmp_path: Path) -> None:
    from bench.measure import batch_size_warnings, log_size

    log = tmp_path / "cassandra.log"
    assert log_size(log) == 0  # not written yet: count from its start
    warn = "WARN  [Native-Transport-Requests-1] BatchStatement.java:293 - Batch for [ks.t] is of size 16.36KiB, "
    log.write_text(f"{warn}exceeding specified threshold of 5.000KiB by 11.36KiB.\nINFO  flushed\n")
    start = log_size(log)
    with log.open("a") as more:
        more.write(f"{warn}exceeding specified threshold of 5.000KiB by 11.36KiB.\n" * 3 + "INFO  compacted\n")
    assert batch_size_warnings(log, start) == 3
    assert batch_size_warnings(log, 0) == 4


def test_a_tuned_setting_sends_its_rows_a_batch_whatever_their_bytes() -> None:
    """The tuned worker is held to the setting's rows, as Benthos's batching.count: its byte limit never binds
    for rows of the example's size (176 B as the sink counts them)."""
    from sluice_worker.batching import batches
    from sluice_worker.model import DeliverySpec
    from sluice_worker.transform import Record
    from sluice_worker.writes import PendingRow

    from bench.systems.sluice import tuned_changes
    from bench.systems.tuning import grid

    rows = [[PendingRow(Record("t", 0, offset, 0), statement=None, size=176)] for offset in range(250)]
    for setting in grid(quick=False):
        changes = tuned_changes(setting)
        delivery = DeliverySpec.model_validate({key.removeprefix("delivery."): v for key, v in changes.items()})
        sent = [len(batch) for batch in batches(rows, delivery.max_rows_per_write, delivery.max_bytes_per_write)]
        assert sent[:2] == [setting.batch] * 2, setting
        assert delivery.max_in_flight == setting.in_flight


def test_tuned_against_tuned_is_reported_beside_the_targets() -> None:
    from bench.report import summary, table

    def result(key: str, seconds: float, cpu: float, cassandra: float, warnings: int) -> Result:
        return Result(key, key, Window(10_000, 0.0, seconds, 0.0), CpuUse({"process": cpu, "cassandra": cassandra},
                      0.9, seconds), 10_000, batch_warnings=warnings,
                      extra={"best": {"batch": 100, "in_flight": 32}, "trials": []})  # fmt: skip

    results = {
        "sluice": result("sluice", 2.5, 1.0, 0.7, 0),
        "sluice_tuned": result("sluice_tuned", 2.0, 0.8, 0.6, 100),  # 5,000 msgs/s, 0.08 CPU s/1k, 60 us/row
        "benthos_tuned": result("benthos_tuned", 2.5, 2.0, 0.7, 95),  # 4,000 msgs/s, 0.2 CPU s/1k, 70 us/row
    }
    got = summary(results, 10_000, 3, None, None, None, "not measured", None)
    assert got["ratio_to_benthos_tuned"] == 1.0  # Sluice at its defaults
    assert got["tuned_ratio_to_benthos_tuned"] == 1.25
    assert got["tuned_cpu_ratio_to_benthos_tuned"] == 0.4
    assert got["tuned_cassandra_cost_ratio_to_benthos_tuned"] == 0.857
    assert got["cassandra_batch_warnings"] == {"sluice": 0, "sluice_tuned": 100, "benthos_tuned": 95}
    lines = table(results, got, None).splitlines()
    at = next(number for number, line in enumerate(lines) if line.startswith("tuned against tuned"))
    assert "Sluice at batches of 100, 32 in flight, Benthos at batches of 100, 32 in flight" in lines[at]
    assert "tuned_ratio_to_benthos_tuned 1.25" in lines[at + 1]
    row = next(line for line in lines if line.startswith("sluice_tuned "))
    assert row.split()[11] == "100"  # the WARNs column
