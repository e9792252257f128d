"""Reads a DataPipeline manifest, from YAML text or a file, into the typed model."""

from __future__ import annotations

from pathlib import Path

import yaml

from .model import DataPipeline, PipelineError, parse_pipeline


def load_pipeline(source: str | Path, *, name: str | None = None, namespace: str = "default") -> DataPipeline:
    """Load a DataPipeline from YAML: a `Path` is read as a file, a `str` is the YAML text itself.

    See `parse_pipeline` for what the document may be. Raises `PipelineError`.
    """
    if isinstance(source, Path):
        try:
            source = source.read_text()
        except OSError as error:
            raise PipelineError(f"cannot read {error.filename}: {error.strerror}") from error
    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError as error:
        raise PipelineError(f"invalid YAML: {error}") from error
    return parse_pipeline(document, name=name, namespace=namespace)
