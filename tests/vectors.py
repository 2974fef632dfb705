"""The wire-format reference cases produced by the original Baseplate.

The cases are the project's data and live in ``tests/vectors/``, one JSON
file per topic; every test reads them from there, on every machine, and a
missing or broken file fails the tests that need it.
``tests/test_vectors_data.py`` checks that the copy is complete and
well-formed; ``scripts/refresh-vectors`` copies a newer set in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS_DIR = Path(__file__).parent / "vectors"


def load(topic: str) -> dict[str, Any]:
    with (VECTORS_DIR / f"{topic}.json").open(encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result


def cases(topic: str) -> list[Any]:
    """The cases of a topic as pytest params, each named by its description."""
    return [pytest.param(case, id=case["desc"]) for case in load(topic)["cases"]]
