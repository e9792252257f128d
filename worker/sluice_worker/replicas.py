"""Which Cassandra nodes hold a row's partition: the driver's token map, looked up as plain integers."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import cassandra.metadata
from cassandra.metadata import Metadata, Murmur3Token

ReplicaIds = tuple[Any, ...]  # the host ids of a partition's replicas, in the driver's order


@dataclass(frozen=True)
class _Ring:
    """One keyspace's replicas by token range, as of one token map: `tokens[i]` ends the range `replicas[i]` hold."""

    hosts_by_token: dict[Any, Any]  # the driver's map this was read from: a topology change replaces it
    tokens: list[int]
    replicas: list[ReplicaIds]


class ReplicaIndex:
    """The replicas of a partition key, as `Metadata.get_replicas` gives them, for a fraction of its CPU.

    The driver's lookup makes a Token object of the key's hash and bisects a ring of Token objects, comparing them
    in Python; a worker does it once a row. This keeps each keyspace's ring as sorted integers and the replicas of
    each range as a tuple of host ids, read again whenever the driver replaces its token map or a keyspace's
    replica map (a node joined or left, the replication changed). Murmur3Partitioner only (every Cassandra's default
    since 1.2) with the driver's compiled murmur3; any other partitioner, a driver without it, or a keyspace the
    driver has no replica map for, is the driver's lookup.
    """

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata
        self._rings: dict[str, _Ring] = {}
        self._hashes = cassandra.metadata.murmur3 is not None  # else the driver finds no replicas (NoMurmur3)

    def of(self, keyspace: str, routing_key: bytes | None) -> ReplicaIds:
        token_map = self._metadata.token_map
        if token_map is None or routing_key is None or token_map.token_class is not Murmur3Token or not self._hashes:
            return self._by_driver(keyspace, routing_key)
        hosts_by_token = token_map.tokens_to_hosts_by_ks.get(keyspace)
        ring = self._rings.get(keyspace)
        if ring is None or ring.hosts_by_token is not hosts_by_token:
            if not hosts_by_token:  # not built yet (the driver builds it on its first lookup), or none
                return self._by_driver(keyspace, routing_key)
            ring = self._rings[keyspace] = _read_ring(hosts_by_token, token_map.ring)
        point = bisect_left(ring.tokens, Murmur3Token.hash_fn(routing_key))
        return ring.replicas[point if point < len(ring.tokens) else 0]  # past the last token: the ring wraps

    def _by_driver(self, keyspace: str, routing_key: bytes | None) -> ReplicaIds:
        if routing_key is None:
            return ()
        return tuple(host.host_id for host in self._metadata.get_replicas(keyspace, routing_key))


def _read_ring(hosts_by_token: dict[Any, Any], ring: list[Any]) -> _Ring:
    return _Ring(
        hosts_by_token,
        [token.value for token in ring],
        [tuple(host.host_id for host in hosts_by_token[token]) for token in ring],
    )
