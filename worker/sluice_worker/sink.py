"""The Cassandra side: connect, create the table if asked, and write rows with a prepared idempotent insert."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cassandra import ConsistencyLevel, InvalidRequest  # type: ignore[attr-defined]
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, BoundStatement, PreparedStatement, Statement

from .deadline import Deadline
from .model import SinkSpec
from .transform import Row
from .writes import PendingRow, WriteCallback

log = logging.getLogger("sluice.sink")

# Rows per unlogged batch: Cassandra warns above 10 partitions per batch (unlogged_batch_across_partitions_warn_
# threshold). Batching rows bound for the same replicas saves the driver most of its per-request work.
ROWS_PER_BATCH = 10

# v4, not v5: v5 frames carry checksums the driver computes in pure Python (a tenth of its CPU); every Cassandra
# since 2.2 speaks v4.
PROTOCOL_VERSION = 4

# Errors about the row itself (e.g. a value Cassandra cannot store): dead-lettered, never retried.
REFUSED_ROW_ERRORS = (InvalidRequest,)


class CassandraSink:
    """Writes rows to one table. Every write is idempotent: the same message always writes the same cells."""

    rows_per_batch = ROWS_PER_BATCH

    def __init__(self, spec: SinkSpec, columns: Sequence[str], request_timeout: float = 10.0) -> None:
        self.spec = spec
        self.columns = list(columns)
        self.request_timeout = request_timeout
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._insert: PreparedStatement | None = None

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
            protocol_version=PROTOCOL_VERSION,
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

    def bind(self, row: Row, timestamp_us: int) -> BoundStatement:
        """The insert for `row`: a missing column is left unset (no tombstone); stamped `timestamp_us`."""
        assert self._insert is not None, "connect() first"
        values = [value if type(value) in _AS_IS else to_cql_value(value) for value in map(row.get, self.columns)]
        values.append(timestamp_us)
        return self._insert.bind(values)

    def replicas_of(self, statement: BoundStatement) -> tuple[object, ...]:
        """The nodes holding the row's partition: rows with the same replicas can share a batch."""
        assert self._cluster is not None
        hosts = self._cluster.metadata.get_replicas(self.spec.keyspace, statement.routing_key)
        return tuple(host.host_id for host in hosts)

    def write(self, rows: Sequence[PendingRow], on_done: WriteCallback) -> None:
        """Sends one request (one row, or an unlogged batch of rows with the same replicas); `on_done(error)`
        runs on a driver thread when Cassandra has answered."""
        assert self._session is not None, "connect() first"
        statement: Statement
        if len(rows) == 1:
            statement = rows[0].statement
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in rows:
                statement.add(row.statement)
            statement.is_idempotent = True
        future = self._session.execute_async(statement)
        future.add_callbacks(callback=lambda _: on_done(None), errback=on_done)

    def refuses(self, error: BaseException) -> bool:
        """Whether Cassandra refused the row itself (retrying cannot help), rather than failed to answer."""
        return isinstance(error, REFUSED_ROW_ERRORS)

    def healthy(self) -> bool:
        """Whether the driver sees at least one live host (cheap; no request)."""
        return self._cluster is not None and any(h.is_up for h in self._cluster.metadata.all_hosts())

    def close(self, deadline: Deadline) -> None:
        """Shuts the driver down, waiting for it until `deadline`: with Cassandra unresponsive, a reconnection
        attempt in flight holds the driver's shutdown for up to its connect timeout."""
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is None:
            return
        closing = threading.Thread(target=cluster.shutdown, name="sluice-sink-close", daemon=True)
        closing.start()
        closing.join(deadline.remaining())
        if closing.is_alive():
            log.warning("Cassandra driver still shutting down at the deadline; not waiting for it")


_AS_IS = frozenset({str, int, float, bool, bytes})  # bound unchanged: skip to_cql_value (the hot path)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_cql_value(value: object) -> object:
    """A row value as the insert binds it: None is left unset (no tombstone); a datetime becomes the
    milliseconds a CQL timestamp holds, in integer arithmetic (the driver's own conversion is much slower)."""
    if value is None:
        return UNSET_VALUE
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive means UTC, as in the driver
        return (aware - _EPOCH) // _MILLISECOND
    return value
