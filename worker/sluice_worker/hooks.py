"""Loads the user's Python hook (`spec.transform.python`): importing runs the module's code, so it is done here."""

from __future__ import annotations

import importlib

from .model import PipelineError, TransformSpec
from .transform import PythonHook


def load_hook(spec: TransformSpec) -> PythonHook | None:
    """The function `spec.python` names (`module:function`), or None without one. Raises `PipelineError`."""
    if spec.python is None:
        return None
    module_name, _, function_name = spec.python.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise PipelineError(f"spec.transform.python: cannot import {module_name!r}: {error}") from error
    function: object = getattr(module, function_name, None)
    if not callable(function):
        raise PipelineError(f"spec.transform.python: {module_name!r} has no function {function_name!r}")
    return function
