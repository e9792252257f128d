"""The Cassandra side: connect, create the table if asked, and write rows with a prepared idempotent insert."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cassandra import ConsistencyLevel  # type: ignore[attr-defined]
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from .model import SinkSpec
from .transform import Record, Row

log = logging.getLogger("sluice.sink")

WriteCallback = Callable[[BaseException | None], None]


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A row to write and the Kafka message it came from (whose offset it holds back until durable)."""

    record: Record
    values: tuple[object, ...]  # the insert's bind values: columns in order, then the write timestamp


class CassandraSink:
    """Writes rows to one table. Every write is idempotent: the same message always writes the same cells."""

    def __init__(self, spec: SinkSpec, columns: Sequence[str], request_timeout: float = 10.0) -> None:
        self.spec = spec
        self.columns = list(columns)
        self.request_timeout = request_timeout
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._insert: PreparedStatement | None = None
        self._partition_key: list[int] = []

    def connect(self) -> None:
        """Connects, creates the keyspace and table if `createTable` says so, and prepares the insert."""
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.spec.local_datacenter)),
            consistency_level=ConsistencyLevel.name_to_value[self.spec.consistency],
            request_timeout=self.request_timeout,
        )
        endpoints = self.spec.endpoints()
        cluster = Cluster(
            contact_points=[host for host, _ in endpoints],
            port=endpoints[0][1],
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=self._auth(),
            connect_timeout=5,
            control_connection_timeout=5,
            idle_heartbeat_interval=5,
            idle_heartbeat_timeout=5,
            reconnection_policy=ConstantReconnectionPolicy(delay=1.0),  # back soon after an outage
        )
        try:
            session = cluster.connect()
            self._ensure_table(session)
            self._insert = session.prepare(self._insert_cql())
            self._insert.is_idempotent = True
        except BaseException:
            cluster.shutdown()
            raise
        table = cluster.metadata.keyspaces[self.spec.keyspace].tables[self.spec.table]
        partition_key = [column.name for column in table.partition_key]
        self._partition_key = [self.columns.index(c) for c in partition_key if c in self.columns]
        self._cluster, self._session = cluster, session
        log.info("connected to Cassandra keyspace=%s table=%s", self.spec.keyspace, self.spec.table)

    def _auth(self) -> PlainTextAuthProvider | None:
        creds = self.spec.credentials
        if creds is None:
            return None
        return PlainTextAuthProvider(os.environ[creds.username_env], os.environ[creds.password_env])

    def _ensure_table(self, session: Session) -> None:
        table = self.spec.create_table
        if table is None:
            return
        ks, name = self.spec.keyspace, self.spec.table
        replication = ", ".join(f"'{k}': {v!r}" for k, v in table.replication.as_cql_map().items())
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{{replication}}}", timeout=30)
        columns = ", ".join(f"{column} {cql_type}" for column, cql_type in table.columns.items())
        partition = ", ".join(table.primary_key[: table.partition_key_columns])
        clustering = table.primary_key[table.partition_key_columns :]
        key = f"({partition}){''.join(', ' + c for c in clustering)}"
        session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.{name} ({columns}, PRIMARY KEY ({key}))", timeout=30)
        session.cluster.control_connection.wait_for_schema_agreement(wait_time=30)

    def _insert_cql(self) -> str:
        names = ", ".join(self.columns)
        markers = ", ".join("?" for _ in self.columns)
        using = "USING TIMESTAMP ?"
        if self.spec.ttl_seconds:
            using += f" AND TTL {self.spec.ttl_seconds}"
        return f"INSERT INTO {self.spec.keyspace}.{self.spec.table} ({names}) VALUES ({markers}) {using}"

    def bind_values(self, row: Row, timestamp_us: int) -> tuple[object, ...]:
        """The insert's values for `row`: a missing column is left unset (no tombstone), then the timestamp."""
        return (*(UNSET_VALUE if row.get(c) is None else row[c] for c in self.columns), timestamp_us)

    def partition_of(self, pending: PendingRow) -> tuple[object, ...]:
        return tuple(pending.values[i] for i in self._partition_key)

    def write(self, rows: Sequence[PendingRow], on_done: WriteCallback) -> None:
        """Sends one request (one row, or an unlogged batch of rows of one partition); `on_done(error)`
        runs on a driver thread when Cassandra has answered."""
        assert self._session is not None and self._insert is not None, "connect() first"
        if len(rows) == 1:
            statement = self._insert.bind(rows[0].values)
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in rows:
                statement.add(self._insert, row.values)
            statement.is_idempotent = True
        future = self._session.execute_async(statement)
        future.add_callbacks(callback=lambda _: on_done(None), errback=on_done)

    def healthy(self) -> bool:
        """Whether the driver sees at least one live host (cheap; no request)."""
        return self._cluster is not None and any(h.is_up for h in self._cluster.metadata.all_hosts())

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = self._session = None


def connect_with_retry(sink: CassandraSink, backoff: Callable[[int], float], stop: Callable[[], bool]) -> bool:
    """Connects, retrying with `backoff(attempt)` seconds between tries until connected or `stop()`."""
    attempt = 0
    while not stop():
        try:
            sink.connect()
            return True
        except Exception as exc:
            delay = backoff(attempt)
            log.warning("Cassandra unreachable (%s); retrying in %.1fs", exc, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stop():
                time.sleep(0.1)
            attempt += 1
    return False
