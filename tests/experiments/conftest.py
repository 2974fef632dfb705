"""What the experiments tests share: an event logger that records, and config files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from baseplate.events import EventLogger
from baseplate.experiments import ExperimentsContextFactory

FAR_FUTURE = 4102444800  # 2100-01-01


class RecordingLogger(EventLogger):
    """Keeps the fields of every event it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def log(self, **kwargs: Any) -> None:
        self.events.append(kwargs)


def simple_config(name: str, exp_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """A running single_variant experiment splitting users 50/50, with ``overrides`` applied."""
    config: dict[str, Any] = {
        "id": exp_id,
        "name": name,
        "owner": "tests",
        "type": "single_variant",
        "version": "1",
        "start_ts": 0,
        "stop_ts": FAR_FUTURE,
        "experiment": {
            "variants": [{"name": "treat", "size": 0.5}, {"name": "control", "size": 0.5}],
            "experiment_version": 1,
            "shuffle_version": 0,
        },
    }
    config.update(overrides)
    return config


def write_config(path: Path, experiments: Any) -> None:
    """Replace the file as the fetcher does: write a temporary file, rename it over."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(experiments))
    os.replace(temporary, path)


@pytest.fixture
def recorder() -> RecordingLogger:
    return RecordingLogger()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "experiments.json"


@pytest.fixture
def factory(config_path: Path, recorder: RecordingLogger) -> ExperimentsContextFactory:
    write_config(config_path, {})
    return ExperimentsContextFactory(str(config_path), event_logger=recorder)
