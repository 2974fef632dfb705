"""Access to the wire-format reference cases produced by the original Baseplate.

The cases live in ``../shared/vectors`` beside the checkout; ``tests/vectors``
holds a copy for machines without it (``test_vectors_copy_is_current`` keeps
the two in step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).parent
VENDORED_DIR = TESTS_DIR / "vectors"
SHARED_DIR = TESTS_DIR.parent.parent / "shared" / "vectors"


def vectors_dir() -> Path:
    return SHARED_DIR if SHARED_DIR.is_dir() else VENDORED_DIR


def load(topic: str) -> dict[str, Any]:
    with (vectors_dir() / f"{topic}.json").open(encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result


def cases(topic: str) -> list[Any]:
    """The cases of a topic as pytest params, each named by its description."""
    return [pytest.param(case, id=case["desc"]) for case in load(topic)["cases"]]
