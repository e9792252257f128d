"""The operator's lag reader against a real Kafka: what it says when it cannot read, and which clients it keeps."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sluice_operator.kafka import LagUnavailable, OffsetReader
from sluice_stack.process import free_port
from sluice_worker.model import SourceSpec

pytestmark = pytest.mark.kafka


def test_a_missing_topic_is_named_and_the_client_kept_for_the_next_read(kafka) -> None:  # type: ignore[no-untyped-def]
    """With many pipelines waiting for their topic, each lag turn must not open a new admin client per pipeline:
    the broker answered, so the connection is good."""
    reader = OffsetReader(timeout=10)
    topic = f"missing-{uuid.uuid4().hex[:8]}"
    source = SourceSpec(bootstrapServers=kafka.bootstrap_servers, topics=[topic])
    for _ in range(2):
        with pytest.raises(LagUnavailable, match=topic) as raised:
            asyncio.run(reader.read(source, "no-such-group"))
        assert raised.value.answered
        assert reader.clients == 1


def test_brokers_that_do_not_answer_leave_no_client_reconnecting() -> None:
    """A dead cluster: the read fails within its timeout and the client is dropped, not left retrying forever."""
    source = SourceSpec(bootstrapServers=f"127.0.0.1:{free_port()}", topics=["events"])  # connections refused
    reader = OffsetReader(timeout=2)
    with pytest.raises(LagUnavailable) as raised:
        asyncio.run(reader.read(source, "group"))
    assert not raised.value.answered
    assert reader.clients == 0
