"""The tables a message feeds, by its topic: each with its compiled transform and its write times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .model import TableTarget
from .transform import Transformer
from .write_time import WriteTime


@dataclass(frozen=True, slots=True)
class Route:
    """One table a topic feeds: its number among the sink's tables, its name, its transform and write times."""

    table: int
    name: str  # keyspace.table, for dead letters and metrics
    transform: Transformer
    write_time: WriteTime


def routes_by_topic(targets: Sequence[TableTarget], transforms: Sequence[Transformer]) -> dict[str, list[Route]]:
    """topic -> the routes of the tables it feeds, in the order of the targets (`transforms` pairs with them)."""
    if len(targets) != len(transforms):
        raise ValueError(f"{len(targets)} tables but {len(transforms)} transforms")
    routes: dict[str, list[Route]] = {}
    for number, (target, transform) in enumerate(zip(targets, transforms, strict=True)):
        route = Route(number, target.name, transform, WriteTime(target))
        for topic in sorted(target.topics):
            routes.setdefault(topic, []).append(route)
    return routes
