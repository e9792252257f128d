"""The Cassandra side: connect, prepare each table's statements (`statements`), send writes, reconnect."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cassandra import ConsistencyLevel, InvalidRequest  # type: ignore[attr-defined]
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, BoundStatement, Statement

from .credentials import CREDENTIALS_DIR, cassandra_login, cassandra_ssl_context
from .deadline import Deadline
from .model import SinkSpec, TableTarget
from .replicas import ReplicaIndex
from .statements import TableStatements
from .transform import Row
from .writes import PendingRow, WriteCallback

log = logging.getLogger("sluice.sink")

# What Cassandra counts for a value beside its bytes (a cell's timestamp and flags). Measured: 50 rows of the
# example are 8.19 KiB to it (168 B a row), and size_of() gives 176 B for those rows: a little above its count.
CELL_OVERHEAD_BYTES = 20

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
    """Writes rows to the pipeline's tables. Every write is idempotent: a message always writes the same cells."""

    def __init__(
        self,
        spec: SinkSpec,
        targets: Sequence[TableTarget],
        request_timeout: float = 10.0,
        credentials_dir: Path = CREDENTIALS_DIR,
    ) -> None:
        self.spec = spec
        self.targets = list(targets)
        self.credentials_dir = credentials_dir
        self.request_timeout = request_timeout
        self._connection: _Connection | None = None  # replaced whole, so the loop never sees half of a new one
        self._lost_since: float | None = None
        self._reconnecting: threading.Thread | None = None

    def connect(self) -> None:
        """Connects, creates the keyspaces and tables `createTable` asks for, and prepares the statements."""
        try:
            self._connection = self._open()
        except NoHostAvailable as exc:
            raise ConnectionError(
                f"no host answered at {', '.join(self.spec.contact_points)}: {describe(exc)}"
            ) from exc
        log.info("connected to Cassandra tables=%s", ",".join(target.name for target in self.targets))

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
            tables = [TableStatements.prepare(session, target) for target in self.targets]
        except BaseException:
            cluster.shutdown()
            raise
        return _Connection(cluster, session, tables, ReplicaIndex(cluster.metadata))

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

    def bind(self, row: Row, timestamp_us: int, ttl: int | None = None, table: int = 0) -> BoundStatement:
        """The insert of `row` into table number `table` (of the targets), stamped `timestamp_us`."""
        assert self._connection is not None, "connect() first"
        return self._connection.tables[table].bind(row, timestamp_us, ttl)

    def bind_delete(self, key: Row, timestamp_us: int, table: int = 0) -> BoundStatement:
        """The delete of the row `key` names in table number `table`; raises MissingKey."""
        assert self._connection is not None, "connect() first"
        return self._connection.tables[table].bind_delete(key, timestamp_us)

    def placement_of(self, statement: BoundStatement) -> tuple[tuple[object, ...], bytes | None]:
        """The nodes holding the row's partition (rows with the same replicas can share a batch), and the partition:
        its key as sent (None when the driver cannot tell it)."""
        assert self._connection is not None
        partition = statement.routing_key
        return self._connection.replicas.of(statement.keyspace, partition), partition

    def size_of(self, statement: BoundStatement) -> int:
        """About the bytes Cassandra counts for the row against its batch size thresholds: its bound values and
        each cell's overhead."""
        values = statement.values
        return sum(len(v) for v in values if isinstance(v, bytes)) + CELL_OVERHEAD_BYTES * len(values)

    def write(self, rows: Sequence[PendingRow], on_done: WriteCallback) -> None:
        """Sends one request (one row, or an unlogged batch of rows with the same replicas); `on_done(error)`
        runs on a driver thread when Cassandra has answered."""
        assert self._connection is not None, "connect() first"
        statement: Statement
        if len(rows) == 1:
            statement = rows[0].statement
        else:
            # The rows of a batch are of one table (the loop groups them so): its consistency is theirs.
            statement = BatchStatement(BatchType.UNLOGGED, consistency_level=rows[0].statement.consistency_level)
            for row in rows:
                statement.add(row.statement)
            statement.is_idempotent = True
        future = self._connection.session.execute_async(statement)
        if isinstance(statement, BatchStatement):
            # The driver's request future is a reference cycle (its timer refers back to it), so whatever it
            # holds waits for the garbage collector; emptying the answered batch frees its rows' values now.
            def answered(error: BaseException | None) -> None:
                statement.clear()
                on_done(error)

            future.add_callbacks(callback=lambda _: answered(None), errback=answered)
        else:
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
    """One driver instance: its cluster, session, each table's prepared statements (in targets' order) and the
    replicas of its token map."""

    cluster: Cluster
    session: Session
    tables: list[TableStatements]
    replicas: ReplicaIndex


def describe(error: BaseException) -> str:
    """The driver's error in words: NoHostAvailable carries its reasons per host in a dict, empty when no host
    could even be resolved or tried."""
    if isinstance(error, NoHostAvailable):
        reasons = "; ".join(f"{host}: {reason}" for host, reason in error.errors.items())
        return f"{error.args[0]} ({reasons or 'no host could be tried: check the names resolve'})"
    return f"{type(error).__name__}: {error}"
