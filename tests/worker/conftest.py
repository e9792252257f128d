"""Fixtures of the worker suite: a fresh pipeline per test and worker processes cleaned up after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import PipelineUnderTest, WorkerProcess


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


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Worker processes, killed after the test; pytest shows their logs when the test fails."""
    workers: list[WorkerProcess] = []

    def make(manifest: Path, **env: str) -> WorkerProcess:
        worker = WorkerProcess(manifest, tmp_path / f"worker-{len(workers)}.log", env)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.cleanup()
        print(f"\n--- {worker.log_path}\n{worker.log(80)}")  # captured: printed only if the test failed
