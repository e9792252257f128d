"""The readable table and the one-line JSON summary `make bench` ends with."""

from __future__ import annotations

import os
from typing import Any

from .systems import Result
from .systems.operator import OperatorResult

# key: (">=" or "<=", target). The ratios are of one run on one machine; the RSS is the worker's, in MiB.
TARGETS = {
    "ratio_to_ceiling": (">=", 0.95),
    "speedup_vs_naive": (">=", 10.0),
    "ratio_to_benthos": (">=", 1.0),
    "ratio_to_benthos_tuned": (">=", 1.1),
    "cpu_ratio_to_benthos_tuned": ("<=", 0.8),
    "cassandra_cost_ratio_to_benthos_tuned": ("<=", 1.0),
    "sluice_rss_mib": ("<=", 150.0),
}
# Sluice tuned over tuned Benthos: shown beside the targets, which hold Sluice at its defaults.
TUNED_AGAINST_TUNED = (
    "tuned_ratio_to_benthos_tuned",
    "tuned_cpu_ratio_to_benthos_tuned",
    "tuned_cassandra_cost_ratio_to_benthos_tuned",
)
OPERATOR_TARGETS = {1000: 20.0, 10_000: 120.0}  # DataPipelines -> all their Deployments within these seconds
LATENCY_TARGETS = {0.5: 1.0, 0.99: 3.0}  # create -> Deployment, one at a time, with the sizes' pipelines present


def _setting(best: dict[str, int] | None) -> str:
    return f"batches of {best['batch']}, {best['in_flight']} in flight" if best else "-"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summary(
    results: dict[str, Result],
    messages: int,
    partitions: int,
    benthos_error: str | None,
    benthos_build_seconds: float | None,
    operator: OperatorResult | None,
    operator_error: str | None,
    profile: str | None,
) -> dict[str, Any]:
    """The JSON object: the issue's keys first, then what explains them."""

    def rate(key: str) -> float | None:
        return round(results[key].window.rate) if key in results else None

    def per_1k(key: str) -> float | None:
        return round(results[key].cpu_per_1k, 4) if key in results else None

    def cassandra_us(key: str) -> float | None:
        value = results[key].cassandra_us_per_row if key in results else None
        return round(value, 1) if value is not None else None

    def mib(key: str, peak: bool = False) -> float | None:
        memory = results[key].memory if key in results else None
        return round((memory.peak_rss_bytes if peak else memory.rss_bytes) / 2**20, 1) if memory else None

    sluice, consume = rate("sluice"), rate("consume")
    # The driver's ceiling is the faster of its two ways of sending (one row a request, replica batches).
    driver_rates = [r for r in (rate("driver"), rate("driver_batched")) if r is not None]
    driver = max(driver_rates) if driver_rates else None
    ceilings = [c for c in (driver, consume) if c is not None]
    out: dict[str, Any] = {
        "sluice_msgs_per_s": sluice,
        "sluice_cpu_s_per_1k": per_1k("sluice"),
        "naive_msgs_per_s": rate("naive"),
        "driver_ceiling_per_s": driver,
        "consume_ceiling_per_s": consume,
        "benthos_msgs_per_s": rate("benthos"),
        "ratio_to_ceiling": _ratio(sluice, min(ceilings)) if ceilings else None,
        "speedup_vs_naive": _ratio(sluice, rate("naive")),
        "ratio_to_benthos": _ratio(sluice, rate("benthos")),
        # Against Benthos at the batching its search found best: speed, client CPU, Cassandra's CPU per row.
        "benthos_tuned_msgs_per_s": rate("benthos_tuned"),
        "benthos_tuned_setting": results["benthos_tuned"].extra["best"] if "benthos_tuned" in results else None,
        "ratio_to_benthos_tuned": _ratio(sluice, rate("benthos_tuned")),
        "cpu_ratio_to_benthos_tuned": _ratio(per_1k("sluice"), per_1k("benthos_tuned")),
        "cassandra_cost_ratio_to_benthos_tuned": _ratio(cassandra_us("sluice"), cassandra_us("benthos_tuned")),
        "cassandra_us_per_row": {key: cassandra_us(key) for key in results if cassandra_us(key) is not None},
        "rows_per_request": {
            key: round(result.rows_per_request, 1)
            for key, result in results.items()
            if result.rows_per_request is not None
        },
        # Sluice at the best setting of the same search as tuned Benthos's: tuned against tuned, for reference.
        "sluice_tuned_msgs_per_s": rate("sluice_tuned"),
        "sluice_tuned_setting": results["sluice_tuned"].extra["best"] if "sluice_tuned" in results else None,
        "tuned_ratio_to_benthos_tuned": _ratio(rate("sluice_tuned"), rate("benthos_tuned")),
        "tuned_cpu_ratio_to_benthos_tuned": _ratio(per_1k("sluice_tuned"), per_1k("benthos_tuned")),
        "tuned_cassandra_cost_ratio_to_benthos_tuned": _ratio(
            cassandra_us("sluice_tuned"), cassandra_us("benthos_tuned")
        ),
        # Cassandra's log lines for batches over its batch_size_warn_threshold, while each system ran.
        "cassandra_batch_warnings": {
            key: result.batch_warnings for key, result in results.items() if result.batch_warnings is not None
        },
        "sluice_rss_mib": mib("sluice"),
        "sluice_peak_rss_mib": mib("sluice", peak=True),
        # Avro values and a second table, each against the plain JSON path of the same run.
        "avro_msgs_per_s": rate("avro"),
        "avro_cpu_s_per_1k": per_1k("avro"),
        "two_tables_msgs_per_s": rate("two_tables"),
        "two_tables_cpu_s_per_1k": per_1k("two_tables"),
        # With --before-worker: the plain JSON path (and the two tables) now against as it was, in the same run.
        "sluice_before_msgs_per_s": rate("sluice_before"),
        "sluice_before_cpu_s_per_1k": per_1k("sluice_before"),
        "ratio_to_before": _ratio(sluice, rate("sluice_before")),
        "two_tables_before_msgs_per_s": rate("two_tables_before"),
        "two_tables_before_cpu_s_per_1k": per_1k("two_tables_before"),
        # A table whose partition key repeats (one partition per department): rows of a partition share requests.
        "by_department_msgs_per_s": rate("by_department"),
        "by_department_cpu_s_per_1k": per_1k("by_department"),
        "by_department_before_msgs_per_s": rate("by_department_before"),
        "by_department_before_cpu_s_per_1k": per_1k("by_department_before"),
    }
    for size in (200, 1000, 10_000):
        scale = next((s for s in operator.scales if s.pipelines == size), None) if operator else None
        out[f"operator_{size}_pipelines_s"] = round(scale.seconds, 1) if scale else None
        if scale is not None and scale.requests:
            out[f"operator_{size}_requests_per_pipeline"] = round(scale.requests_per_pipeline(), 2)
            out[f"operator_{size}_control_plane_cpu_s"] = round(sum(scale.control_plane_cpu_seconds.values()), 1)
    out["operator_peak_rss_mb"] = round(operator.peak_rss_bytes / 2**20, 1) if operator else None
    latency = operator.latency if operator else None
    out["operator_latency_present"] = latency.present if latency else None
    out["operator_latency_p50_s"] = round(latency.quantile(0.5), 3) if latency else None
    out["operator_latency_p99_s"] = round(latency.quantile(0.99), 3) if latency else None
    out["operator_settle_s"] = round(latency.settle_seconds, 1) if latency else None
    out["operator_error"] = operator_error
    out["benthos_error"] = benthos_error
    out |= {
        "messages": messages,
        "partitions": partitions,
        "cpus": os.cpu_count(),
        "naive_messages": results["naive"].window.count if "naive" in results else None,
        "benthos_cpu_s_per_1k": per_1k("benthos"),
        "benthos_tuned_cpu_s_per_1k": per_1k("benthos_tuned"),
        "benthos_tuned_trials": results["benthos_tuned"].extra["trials"] if "benthos_tuned" in results else None,
        "sluice_tuned_cpu_s_per_1k": per_1k("sluice_tuned"),
        "sluice_tuned_trials": results["sluice_tuned"].extra["trials"] if "sluice_tuned" in results else None,
        "benthos_build_s": round(benthos_build_seconds, 1) if benthos_build_seconds is not None else None,
        "sluice_startup_s": round(results["sluice"].window.startup, 2) if "sluice" in results else None,
        "driver_single_row_per_s": rate("driver"),
        "driver_single_row_setting": results["driver"].detail if "driver" in results else None,
        "driver_batched_per_s": rate("driver_batched"),
        "driver_batched_setting": results["driver_batched"].detail if "driver_batched" in results else None,
        "operator_replicas": operator.replicas if operator else None,
    }
    for key, result in results.items():
        out[f"machine_busy_{key}"] = round(result.cpu.machine_busy, 3)
    for key, result in results.items():
        if "runs" in result.extra:  # measured --rounds times; the rate above is the median run's
            out[f"{key}_runs_per_s"] = result.extra["runs"]
    if profile:
        out["profile"] = profile
    return out


def table(results: dict[str, Result], summary: dict[str, Any], operator: OperatorResult | None) -> str:
    """Systems, fastest first, then the ratios against their targets, then the operator."""
    cpus = os.cpu_count() or 1
    header = (
        f"{'system':<52} {'msgs/s':>8} {'msgs':>8} {'secs':>6} {'CPU s/1k':>8} {'own cores':>9} "
        f"{'Cassandra':>9} {'Kafka':>6} {'machine':>7} {'C* us/row':>9} {'rows/req':>8} {'WARNs':>6} "
        f"{'RSS MiB':>7}  notes"
    )
    lines = [header, "-" * len(header)] if results else []
    for result in sorted(results.values(), key=lambda r: -r.window.rate):
        w, cpu = result.window, result.cpu

        def cores(name: str, cpu: Any = cpu, w: Any = w) -> str:
            return f"{cpu.seconds.get(name, 0.0) / w.seconds:.2f}" if w.seconds else "-"

        us = result.cassandra_us_per_row
        rss = f"{result.memory.rss_bytes / 2**20:.0f}" if result.memory else "-"
        per_request = f"{result.rows_per_request:.1f}" if result.rows_per_request is not None else "-"
        warnings = f"{result.batch_warnings:,}" if result.batch_warnings is not None else "-"
        lines.append(
            f"{result.title:<52} {w.rate:>8,.0f} {w.count:>8,} {w.seconds:>6.1f} {result.cpu_per_1k:>8.3f} "
            f"{cores('process'):>9} {cores('cassandra'):>9} {cores('kafka'):>6} "
            f"{cpu.machine_busy * 100:>6.0f}% {f'{us:.0f}' if us is not None else '-':>9} {per_request:>8} "
            f"{warnings:>6} {rss:>7}  "
            f"{result.detail}".rstrip()
        )
    if results:
        lines.append(
            f"(own cores, Cassandra, Kafka: CPU cores each used in the window; machine: busy share of {cpus} CPUs;\n"
            " C* us/row: Cassandra's CPU microseconds per row written; rows/req: rows per write request, where the\n"
            " system counts its requests; WARNs: Cassandra's log lines for batches over its batch_size_warn_threshold\n"
            " while the system ran; RSS: resident memory once every row was durable)"
        )
        lines.append("")
    for key, (sense, target) in TARGETS.items():
        value = summary[key]
        met = value is not None and (value >= target if sense == ">=" else value <= target)
        verdict = "n/a" if value is None else ("met" if met else "MISSED")
        lines.append(f"{key:<37} {value if value is not None else 'null':>8}   target {sense} {target:<5} {verdict}")
    tuned = [key for key in TUNED_AGAINST_TUNED if summary.get(key) is not None]
    if tuned:
        shown = "  ".join(f"{key} {summary[key]}" for key in tuned)
        sluice, benthos = _setting(summary["sluice_tuned_setting"]), _setting(summary["benthos_tuned_setting"])
        lines.append(f"tuned against tuned (the same search for both; Sluice at {sluice}, Benthos at {benthos}):")
        lines.append(f"  {shown}")
    if summary["benthos_error"]:
        lines.append(f"benthos: null ({summary['benthos_error']})")
    lines.append("")
    if operator is not None:
        for scale in operator.scales:
            verdict = ""
            if (limit := OPERATOR_TARGETS.get(scale.pipelines)) is not None:
                verdict = f"  target < {limit:.0f}s {'met' if scale.seconds < limit else 'MISSED'}"
            lines.append(
                f"operator: {scale.pipelines:>5,} DataPipelines -> all Deployments in {scale.seconds:6.1f}s "
                f"(creating them took {scale.apply_seconds:.1f}s; operator CPU {scale.operator_cpu_seconds:.1f}s, "
                f"peak RSS {scale.peak_rss_bytes / 2**20:.0f} MiB){verdict}"
            )
            if scale.control_plane_cpu_seconds:
                spent = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in scale.control_plane_cpu_seconds.items())
                lines.append(f"          control plane CPU meanwhile: {spent}")
            if scale.requests:
                top = ", ".join(f"{what} {n / scale.pipelines:.2f}" for what, n in scale.requests.most_common(8))
                lines.append(
                    f"          API requests per pipeline, all clients: {scale.requests_per_pipeline():.1f} ({top})"
                )
        if (latency := operator.latency) is not None:
            quantiles = ", ".join(
                f"p{q * 100:.0f} {latency.quantile(q):.2f}s (target < {limit:.0f}s "
                f"{'met' if latency.quantile(q) < limit else 'MISSED'})"
                for q, limit in LATENCY_TARGETS.items()
            )
            lines.append(
                f"operator: create -> Deployment, {len(latency.seconds)} one at a time with {latency.present:,} "
                f"DataPipelines present and Ready (all Ready {latency.settle_seconds:.1f}s after the last "
                f"Deployment): {quantiles}, min {min(latency.seconds):.2f}s, max {max(latency.seconds):.2f}s"
            )
    else:
        lines.append(f"operator: null ({summary['operator_error']})")
    return "\n".join(lines)
