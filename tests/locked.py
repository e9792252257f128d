"""The versions constraints.txt locks, by normalised distribution name, for tests that check what got installed."""

from __future__ import annotations

import re
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def normalise(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): `PyYAML` and `pyyaml`, `a_b` and `a-b` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(path: Path = CONSTRAINTS) -> dict[str, str]:
    """`name==version` lines of the constraints file; anything else but comments is an error naming the line."""
    versions: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if match is None:
            raise ValueError(f"{path.name}:{number}: {line!r} is not an exact pin (name==version)")
        versions[normalise(match[1])] = match[2]
    return versions
