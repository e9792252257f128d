"""The Cassandra side of the harness: a fresh table per measured system, and the check that it holds N rows."""

from __future__ import annotations

from collections import Counter

from cassandra.cluster import Cluster, Session
from cassandra.policies import ConstantReconnectionPolicy
from cassandra.query import SimpleStatement

from .measure import BenchError
from .workload import KEYSPACE, Pipeline


class Tables:
    """Creates, checks and drops the benchmark's tables in the `sluice_bench` keyspace."""

    def __init__(self, contact_point: str, pipeline: Pipeline) -> None:
        host, port = contact_point.rsplit(":", 1)
        self.pipeline = pipeline
        # Reconnect within a second of a Cassandra pause or restart (the recovery runs make both).
        self._cluster = Cluster([host], port=int(port), reconnection_policy=ConstantReconnectionPolicy(1.0))
        self.session: Session = self._cluster.connect()
        self.session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            timeout=60,
        )
        self.created: list[str] = []

    def fresh(self, table: str, primary_key: tuple[str, ...] | None = None) -> str:
        """An empty table named `table` with the example's columns (replacing any leftover), keyed by the example's
        primary key or `primary_key`."""
        self.session.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{table}", timeout=60)
        self.session.execute(self.pipeline.create_table_cql(table, primary_key), timeout=60)
        self._cluster.control_connection.wait_for_schema_agreement(wait_time=30)
        self.created.append(table)
        return table

    def fresh_by_department(self, table: str) -> str:
        """An empty table of the two-table run's second kind: rows by department, then id."""
        self.session.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{table}", timeout=60)
        self.session.execute(
            f"CREATE TABLE {KEYSPACE}.{table} (department text, id text, price double, PRIMARY KEY ((department), id))",
            timeout=60,
        )
        self._cluster.control_connection.wait_for_schema_agreement(wait_time=30)
        self.created.append(table)
        return table

    def check_by_department(self, table: str, expected: Counter[str]) -> None:
        """Fails loudly unless the by-department `table` holds exactly the `expected` rows per department."""
        query = SimpleStatement(f"SELECT department FROM {KEYSPACE}.{table}", fetch_size=5000)
        found = Counter(row.department for row in self.session.execute(query, timeout=120))
        if found != expected:
            raise BenchError(f"{KEYSPACE}.{table}: rows per department {dict(found)}, expected {dict(expected)}")

    def check(self, table: str, count: int, expected: Counter[str] | None = None) -> int:
        """Fails loudly unless `table` holds exactly `count` rows, each with the department its item maps to,
        and (if given) exactly the `expected` rows per department. Returns the row count."""
        query = SimpleStatement(f"SELECT item_name, department FROM {KEYSPACE}.{table}", fetch_size=5000)
        found: Counter[str] = Counter()
        wrong = 0
        for row in self.session.execute(query, timeout=120):
            found[row.department] += 1
            wrong += row.department != self.pipeline.department(row.item_name)
        total = sum(found.values())
        if total != count:
            raise BenchError(f"{KEYSPACE}.{table} holds {total:,} rows, expected exactly {count:,}")
        if wrong:
            raise BenchError(f"{KEYSPACE}.{table}: {wrong:,} rows have the wrong department for their item")
        if expected is not None and found != expected:
            raise BenchError(f"{KEYSPACE}.{table}: rows per department {dict(found)}, expected {dict(expected)}")
        return total

    def drop_all(self) -> None:
        for table in self.created:
            self.session.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{table}", timeout=60)
        self.created.clear()

    def close(self) -> None:
        self._cluster.shutdown()
