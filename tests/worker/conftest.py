"""Fixtures of the worker suite: a fresh pipeline per test (worker processes: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import PipelineUnderTest


@pytest.fixture
def make_pipeline(kafka, cassandra, tmp_path: Path) -> Iterator[Callable[..., PipelineUnderTest]]:  # type: ignore[no-untyped-def]
    made: list[PipelineUnderTest] = []

    def make(partitions: int = 1) -> PipelineUnderTest:
        pipeline = PipelineUnderTest(kafka.bootstrap_servers, cassandra.contact_point, tmp_path, partitions)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


@pytest.fixture
def pipeline(make_pipeline: Callable[..., PipelineUnderTest]) -> PipelineUnderTest:
    return make_pipeline()
