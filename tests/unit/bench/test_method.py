"""How `make bench` places processes and picks the reported run of several (bench/placement.py, bench/run.py)."""

from __future__ import annotations

import pytest

from bench.measure import CpuUse, Window
from bench.placement import Placement
from bench.run import median_run
from bench.systems import Result


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
    import http.server
    import threading

    from bench.measure import scrape

    body = (
        b"# HELP sluice_rows_written_total Rows\n"
        b'sluice_rows_written_total{table="a"} 3.0\n'
        b'sluice_rows_written_total{table="b"} 4.0\n'
        b"sluice_messages_consumed_total 9.0\n"
    )

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
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        one = 'sluice_rows_written_total{table="b"}'
        got = scrape(url, ("sluice_rows_written_total", one, "sluice_messages_consumed_total", "missing_total"))
    finally:
        server.shutdown()
    assert got == {"sluice_rows_written_total": 7.0, one: 4.0, "sluice_messages_consumed_total": 9.0,
                   "missing_total": 0.0}  # fmt: skip
