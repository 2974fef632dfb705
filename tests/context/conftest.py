"""Fixtures shared by the client tests."""

from __future__ import annotations

import pytest

from baseplate.testing import RecordingObserver


@pytest.fixture
def recorder() -> RecordingObserver:
    """Records the events of every span of the requests it observes."""
    return RecordingObserver()
