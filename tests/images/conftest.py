"""The images, built once per session by the script users run."""

from __future__ import annotations

import pytest

from .docker import Images, build_images, ensure_docker


@pytest.fixture(scope="session")
def images() -> Images:
    ensure_docker()
    return build_images()
