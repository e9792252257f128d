"""Smoke tests: the local Cassandra is a real database that stores rows and can be paused like `docker pause`."""

from __future__ import annotations

import time
import uuid

import pytest
from cassandra import OperationTimedOut, ReadTimeout
from cassandra.cluster import Cluster, NoHostAvailable, Session

from tests.waiting import wait_for

pytestmark = pytest.mark.cassandra


@pytest.fixture
def session(cassandra):  # type: ignore[no-untyped-def]
    cluster = Cluster([cassandra.host], port=cassandra.port)
    yield cluster.connect()
    cluster.shutdown()


def test_keyspace_table_write_and_read(session: Session) -> None:
    keyspace = f"smoke_{uuid.uuid4().hex[:8]}"
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    session.execute(f"CREATE TABLE {keyspace}.items (id text PRIMARY KEY, price double)")
    session.execute(f"INSERT INTO {keyspace}.items (id, price) VALUES (%s, %s)", ("blue-gopher", 9.5))
    row = session.execute(f"SELECT id, price FROM {keyspace}.items WHERE id = %s", ("blue-gopher",)).one()
    assert (row.id, row.price) == ("blue-gopher", 9.5)


def test_paused_cassandra_times_out_then_answers_after_resume(cassandra, session: Session) -> None:  # type: ignore[no-untyped-def]
    query = "SELECT release_version FROM system.local"
    assert session.execute(query).one().release_version.startswith("5.0")
    with cassandra.paused(seconds=5):
        started = time.monotonic()
        with pytest.raises((OperationTimedOut, ReadTimeout, NoHostAvailable)):
            session.execute(query, timeout=2)
        assert time.monotonic() - started < 5
    # The driver may need a moment to mark the host up again.
    release = wait_for(
        "the resumed Cassandra to answer a query",
        lambda: session.execute(query, timeout=5).one().release_version,
        timeout=30,
        tolerate=(OperationTimedOut, NoHostAvailable),
    )
    assert release.startswith("5.0")
