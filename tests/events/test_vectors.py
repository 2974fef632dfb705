"""Every case of the events vectors (``vectors/events.json``), produced by the original."""

from __future__ import annotations

import base64
import datetime
import uuid
from typing import Any

import posix_ipc
import pytest

import baseplate.events
from baseplate.events import Event, FieldKind, serialize_v1_event, serialize_v2_event
from tests.events.v2_struct import VectorEvent
from tests.vectors import load

CASES = load("events")["cases"]


def cases_of(kind: str) -> list[Any]:
    return [pytest.param(case, id=case["desc"]) for case in CASES if case["kind"] == kind]


def test_every_case_is_run():
    kinds = {case["kind"] for case in CASES}
    assert kinds == {"serialize", "queue_put", "v2"}


def timestamp_of(case: dict[str, Any]) -> datetime.datetime:
    spec = case["timestamp"]
    timestamp = datetime.datetime.strptime(spec["iso"], "%Y-%m-%dT%H:%M:%S.%f")
    if "tz_offset_minutes" in spec:
        offset = datetime.timedelta(minutes=spec["tz_offset_minutes"])
        timestamp = timestamp.replace(tzinfo=datetime.timezone(offset))
    return timestamp


def build_event(case: dict[str, Any]) -> Event:
    event = Event(case["topic"], case["event_type"], timestamp_of(case), uuid.UUID(case["id"]))
    for key, value, kind in case["fields"]:
        if kind == "default":
            event.set_field(key, value)
        elif kind == "obfuscate=True":
            with pytest.warns(DeprecationWarning, match="obfuscate"):
                event.set_field(key, value, obfuscate=True)
        else:
            event.set_field(key, value, kind=FieldKind[kind])
    return event


@pytest.mark.parametrize("case", cases_of("serialize"))
def test_serialize(case):
    if "expected_error" in case:
        assert case["expected_error"] == "ValueError"
        with pytest.raises(ValueError, match="UTC"):
            build_event(case)
        return
    event = build_event(case)
    serialized = serialize_v1_event(event)
    assert isinstance(serialized, str)
    assert serialized == case["expected_json"]
    for key, value in case["get_field"].items():
        assert event.get_field(key) == value


class FakePosixQueue:
    """Stands in for ``posix_ipc.MessageQueue``: records what is opened and sent."""

    opened: list[FakePosixQueue]
    full = False

    def __init__(
        self, name: str, flags: int = 0, mode: int = 0o600, max_messages: int = 0,
        max_message_size: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        self.name = name
        self.flags = flags
        self.max_messages = max_messages
        self.max_message_size = max_message_size
        self.sent: list[bytes] = []
        self.opened.append(self)

    def send(self, message: bytes, timeout: float | None = None, priority: int = 0) -> None:
        if self.full:
            raise posix_ipc.BusyError("full")
        self.sent.append(bytes(message))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("case", cases_of("queue_put"))
def test_queue_put(case, monkeypatch):
    fake = type("Fake", (FakePosixQueue,), {"opened": [], "full": case["queue_full"]})
    monkeypatch.setattr(posix_ipc, "MessageQueue", fake)

    queue = baseplate.events.EventQueue(case["queue_name"])

    (opened,) = fake.opened
    expected_mq = case["expected_mq"]
    assert (opened.name, opened.max_messages, opened.max_message_size) == (
        expected_mq["name"],
        expected_mq["max_messages"],
        expected_mq["max_message_size"],
    )
    assert opened.flags & posix_ipc.O_CREAT
    event = build_event(case)
    if "expected_error" in case:
        with pytest.raises(getattr(baseplate.events, case["expected_error"])):
            queue.put(event)
        assert opened.sent == []
    else:
        queue.put(event)
        assert opened.sent == [case["expected_message"].encode()]


@pytest.mark.parametrize("case", cases_of("v2"))
def test_v2(case):
    serialized = serialize_v2_event(VectorEvent(**case["fields"]))
    assert serialized == base64.b64decode(case["expected_b64"])
