"""constraints.txt agrees with pyproject.toml's pins, and the venv the tests run in holds what it locks."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from tests.locked import CONSTRAINTS, locked_versions, normalise

PYPROJECT = CONSTRAINTS.parent / "pyproject.toml"


def pinned_in_pyproject() -> dict[str, str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    pins = {}
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)", requirement.replace(" ", ""))
        assert match, f"pyproject.toml: {requirement!r} is not pinned with =="
        pins[normalise(match[1])] = match[3]
    return pins


def test_constraints_lock_the_versions_pyproject_pins() -> None:
    locked = locked_versions()
    disagree = {
        name: (version, locked.get(name))
        for name, version in pinned_in_pyproject().items()
        if locked.get(name) != version
    }
    assert not disagree, f"pyproject.toml vs constraints.txt (run `make lock`): {disagree}"


def test_the_venv_holds_the_locked_versions() -> None:
    installed = {normalise(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    differ = {
        name: (version, installed.get(name))
        for name, version in locked_versions().items()
        if installed.get(name) != version
    }
    assert not differ, f"constraints.txt vs this venv (make venv installs with -c constraints.txt): {differ}"
