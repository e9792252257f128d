"""The Cassandra side: connect, create the table if asked, and write rows with a prepared idempotent insert."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cassandra import ConsistencyLevel, InvalidRequest  # type: ignore[attr-defined]
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, BoundStatement, PreparedStatement, Statement

from .credentials import CREDENTIALS_DIR, cassandra_login, cassandra_ssl_context
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

# With no live host for this long, the sink connects anew from its contact points: the driver resolves contact
# point names only when it connects, so a Cassandra that came back at a new address (a rescheduled pod keeps its
# DNS name, not its IP) is found only by a new connection. A node that comes back at its old address is found
# by the driver's own reconnection (every second) well before this.
RECONNECT_AFTER_SECONDS = 10.0

# Errors about the row itself (e.g. a value Cassandra cannot store): dead-lettered, never retried.
REFUSED_ROW_ERRORS = (InvalidRequest,)


class CassandraSink:
    """Writes rows to one table. Every write is idempotent: the same message always writes the same cells."""

    rows_per_batch = ROWS_PER_BATCH

    def __init__(
        self,
        spec: SinkSpec,
        columns: Sequence[str],
        request_timeout: float = 10.0,
        credentials_dir: Path = CREDENTIALS_DIR,
    ) -> None:
        self.spec = spec
        self.credentials_dir = credentials_dir
        self.columns = list(columns)
        self.request_timeout = request_timeout
        self._connection: _Connection | None = None  # replaced whole, so the loop never sees half of a new one
        self._lost_since: float | None = None
        self._reconnecting: threading.Thread | None = None

    def connect(self) -> None:
        """Connects, creates the keyspace and table if `createTable` says so, and prepares the insert."""
        try:
            self._connection = self._open()
        except NoHostAvailable as exc:
            raise ConnectionError(
                f"no host answered at {', '.join(self.spec.contact_points)}: {describe(exc)}"
            ) from exc
        log.info("connected to Cassandra keyspace=%s table=%s", self.spec.keyspace, self.spec.table)

    def _open(self) -> _Connection:
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
            ssl_context=cassandra_ssl_context(self.spec.tls, self.credentials_dir) if self.spec.tls else None,
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
            insert = session.prepare(self._insert_cql())
            insert.is_idempotent = True
        except BaseException:
            cluster.shutdown()
            raise
        return _Connection(cluster, session, insert)

    def reconnect_if_lost(self) -> None:
        """Connects anew, in the background, once no host has been up for RECONNECT_AFTER_SECONDS; the new
        connection replaces the old one when it is ready. Requests of the old one fail and are retried."""
        if self._connection is None or self.healthy():
            self._lost_since = None
            return
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
        reconnecting = self._reconnecting is not None and self._reconnecting.is_alive()
        if now - self._lost_since >= RECONNECT_AFTER_SECONDS and not reconnecting:
            self._reconnecting = threading.Thread(target=self._reconnect, name="sluice-sink-reconnect", daemon=True)
            self._reconnecting.start()

    def _reconnect(self) -> None:
        points = ", ".join(self.spec.contact_points)
        log.warning("no Cassandra host up for %.0fs: connecting anew to %s", RECONNECT_AFTER_SECONDS, points)
        try:
            connection = self._open()
        except Exception as exc:
            log.warning("Cassandra still unreachable at %s: %s", points, describe(exc))
            self._lost_since = time.monotonic()  # the next attempt after another full wait
            return
        old = self._connection
        if old is None:  # closed meanwhile
            connection.cluster.shutdown()
            return
        self._connection, self._lost_since = connection, None
        log.info("connected to Cassandra again at %s", points)
        old.cluster.shutdown()

    def _auth(self) -> PlainTextAuthProvider | None:
        if self.spec.auth is not None:
            return PlainTextAuthProvider(*cassandra_login(self.spec.auth, self.credentials_dir))
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
        assert self._connection is not None, "connect() first"
        values = [value if type(value) in _AS_IS else to_cql_value(value) for value in map(row.get, self.columns)]
        values.append(timestamp_us)
        return self._connection.insert.bind(values)

    def replicas_of(self, statement: BoundStatement) -> tuple[object, ...]:
        """The nodes holding the row's partition: rows with the same replicas can share a batch."""
        assert self._connection is not None
        hosts = self._connection.cluster.metadata.get_replicas(self.spec.keyspace, statement.routing_key)
        return tuple(host.host_id for host in hosts)

    def write(self, rows: Sequence[PendingRow], on_done: WriteCallback) -> None:
        """Sends one request (one row, or an unlogged batch of rows with the same replicas); `on_done(error)`
        runs on a driver thread when Cassandra has answered."""
        assert self._connection is not None, "connect() first"
        statement: Statement
        if len(rows) == 1:
            statement = rows[0].statement
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in rows:
                statement.add(row.statement)
            statement.is_idempotent = True
        future = self._connection.session.execute_async(statement)
        future.add_callbacks(callback=lambda _: on_done(None), errback=on_done)

    def refuses(self, error: BaseException) -> bool:
        """Whether Cassandra refused the row itself (retrying cannot help), rather than failed to answer."""
        return isinstance(error, REFUSED_ROW_ERRORS)

    def healthy(self) -> bool:
        """Whether the driver sees at least one live host (cheap; no request)."""
        connection = self._connection
        return connection is not None and any(h.is_up for h in connection.cluster.metadata.all_hosts())

    def close(self, deadline: Deadline) -> None:
        """Shuts the driver down, waiting for it until `deadline`: with Cassandra unresponsive, a reconnection
        attempt in flight holds the driver's shutdown for up to its connect timeout."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        closing = threading.Thread(target=connection.cluster.shutdown, name="sluice-sink-close", daemon=True)
        closing.start()
        closing.join(deadline.remaining())
        if closing.is_alive():
            log.warning("Cassandra driver still shutting down at the deadline; not waiting for it")


@dataclass(frozen=True)
class _Connection:
    """One driver instance: its cluster, session and the prepared insert."""

    cluster: Cluster
    session: Session
    insert: PreparedStatement


def describe(error: BaseException) -> str:
    """The driver's error in words: NoHostAvailable carries its reasons per host in a dict, empty when no host
    could even be resolved or tried."""
    if isinstance(error, NoHostAvailable):
        reasons = "; ".join(f"{host}: {reason}" for host, reason in error.errors.items())
        return f"{error.args[0]} ({reasons or 'no host could be tried: check the names resolve'})"
    return f"{type(error).__name__}: {error}"


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
