"""The worker's replica lookup gives, for every key, the replicas the driver's own token map gives."""

from __future__ import annotations

import random
import uuid

import cassandra.metadata
import pytest
from cassandra.connection import DefaultEndPoint
from cassandra.metadata import KeyspaceMetadata, Metadata, Murmur3Token
from cassandra.policies import SimpleConvictionPolicy
from cassandra.pool import Host
from sluice_worker.replicas import ReplicaIndex

MURMUR3 = "org.apache.cassandra.dht.Murmur3Partitioner"


def cluster_metadata(nodes: int, vnodes: int, seed: int = 7) -> tuple[Metadata, list[Host]]:
    """The driver's metadata of `nodes` nodes (two datacenters) of `vnodes` random tokens each, with a keyspace
    of each replication strategy, as its control connection fills it."""
    rng = random.Random(seed)
    metadata = Metadata()
    hosts = []
    for n in range(nodes):
        host = Host(DefaultEndPoint(f"127.0.0.{n + 1}"), SimpleConvictionPolicy, host_id=uuid.UUID(int=n + 1))
        host.set_location_info(f"dc{n % 2 + 1}", f"rack{n % 3}")
        hosts.append(host)
    metadata.keyspaces["simple"] = KeyspaceMetadata("simple", True, "SimpleStrategy", {"replication_factor": "3"})
    metadata.keyspaces["spread"] = KeyspaceMetadata("spread", True, "NetworkTopologyStrategy", {"dc1": "2", "dc2": "1"})
    metadata.partitioner = MURMUR3
    metadata.rebuild_token_map(
        MURMUR3, {host: [str(rng.randint(-(2**63), 2**63 - 1)) for _ in range(vnodes)] for host in hosts}
    )
    return metadata, hosts


def keys(count: int) -> list[bytes]:
    rng = random.Random(11)
    return [rng.randbytes(rng.randint(0, 40)) for _ in range(count)] + [b"", b"evt-00000001"]


def by_driver(metadata: Metadata, keyspace: str, key: bytes) -> tuple[object, ...]:
    return tuple(host.host_id for host in metadata.get_replicas(keyspace, key))


@pytest.mark.parametrize(("nodes", "vnodes"), [(1, 1), (1, 16), (6, 1), (6, 16)])
@pytest.mark.parametrize("keyspace", ["simple", "spread"])
def test_every_key_has_the_replicas_the_driver_gives(nodes: int, vnodes: int, keyspace: str) -> None:
    metadata, _ = cluster_metadata(nodes, vnodes)
    index = ReplicaIndex(metadata)
    for key in keys(3_000):
        assert index.of(keyspace, key) == by_driver(metadata, keyspace, key), key


def test_a_token_past_the_last_one_belongs_to_the_first_range() -> None:
    metadata, _ = cluster_metadata(3, 1)
    index = ReplicaIndex(metadata)
    index.of("simple", b"warm-up")  # the driver builds the keyspace's map on its first lookup
    last = max(token.value for token in metadata.token_map.ring)
    wrapping = [key for key in keys(20_000) if Murmur3Token.hash_fn(key) > last]
    assert wrapping, "no key hashed past the last token: the case is not exercised"
    for key in wrapping:
        assert index.of("simple", key) == by_driver(metadata, "simple", key)


def test_a_node_joining_changes_the_replicas_at_once() -> None:
    metadata, hosts = cluster_metadata(4, 4)
    index = ReplicaIndex(metadata)
    sample = keys(2_000)
    before = [index.of("simple", key) for key in sample]
    joined = Host(DefaultEndPoint("127.0.0.99"), SimpleConvictionPolicy, host_id=uuid.UUID(int=99))
    joined.set_location_info("dc1", "rack0")
    rng = random.Random(3)
    token_strings = {host: [str(token.value) for token, owner in metadata.token_map.token_to_host_owner.items()
                            if owner is host] for host in hosts}  # fmt: skip
    token_strings[joined] = [str(rng.randint(-(2**63), 2**63 - 1)) for _ in range(8)]
    metadata.rebuild_token_map(MURMUR3, token_strings)
    after = [index.of("simple", key) for key in sample]
    assert after == [by_driver(metadata, "simple", key) for key in sample]
    assert after != before
    assert any(uuid.UUID(int=99) in replicas for replicas in after)


def test_without_a_token_map_or_a_routing_key_it_is_the_driver_answer() -> None:
    metadata = Metadata()  # no token map (e.g. token metadata disabled)
    index = ReplicaIndex(metadata)
    assert index.of("simple", b"key") == ()
    metadata, _ = cluster_metadata(3, 2)
    assert ReplicaIndex(metadata).of("simple", None) == ()
    assert ReplicaIndex(metadata).of("no_such_keyspace", b"key") == by_driver(metadata, "no_such_keyspace", b"key")


def test_a_driver_without_its_murmur3_extension_gives_its_own_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    metadata, _ = cluster_metadata(3, 2)
    monkeypatch.setattr(cassandra.metadata, "murmur3", None)  # as a driver installed without its C extensions
    assert ReplicaIndex(metadata).of("simple", b"key") == by_driver(metadata, "simple", b"key") == ()
