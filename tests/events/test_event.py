"""Building v1 events: timestamps, ids, field kinds and their sections."""

from __future__ import annotations

import datetime
import json
import logging
import uuid

import pytest

from baseplate.events import (
    DebugLogger,
    Event,
    EventError,
    EventLogger,
    EventQueueFullError,
    EventTooLargeError,
    FieldKind,
    serialize_v1_event,
)


def payload_of(event: Event) -> dict:
    return json.loads(serialize_v1_event(event))["payload"]


def test_field_kinds_name_their_payload_sections():
    assert FieldKind.NORMAL.value is None
    assert FieldKind.OBFUSCATED.value == "obfuscated_data"
    assert FieldKind.HIGH_CARDINALITY.value == "interana_excluded"


def test_defaults_are_now_in_milliseconds_and_a_new_uuid(monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1500000000.1234)
    event = Event("topic", "type")
    assert event.timestamp == pytest.approx(1500000000123.4)
    assert json.loads(event.serialize())["event_ts"] == 1500000000123
    assert isinstance(event.id, uuid.UUID)
    assert event.id.version == 4
    assert Event("topic", "type").id != event.id


def test_given_id_is_kept_as_is_and_sent_as_its_str():
    event = Event("topic", "type", id=12345)
    assert event.id == 12345
    assert json.loads(event.serialize())["uuid"] == "12345"


@pytest.mark.parametrize(
    "tzinfo",
    [None, datetime.timezone.utc, datetime.timezone(datetime.timedelta(0), "Z")],
    ids=["naive", "utc", "zero-offset"],
)
def test_utc_timestamps_keep_whole_seconds(tzinfo):
    timestamp = datetime.datetime(2016, 2, 23, 0, 3, 17, 999999, tzinfo=tzinfo)
    assert Event("topic", "type", timestamp=timestamp).timestamp == 1456185797000


@pytest.mark.parametrize("minutes", [-30, 1, 120])
def test_other_offsets_are_refused(minutes):
    zone = datetime.timezone(datetime.timedelta(minutes=minutes))
    with pytest.raises(ValueError, match="UTC"):
        Event("topic", "type", timestamp=datetime.datetime(2016, 2, 23, tzinfo=zone))


def test_each_kind_goes_to_its_section_in_order_of_first_appearance():
    event = Event("topic", "type")
    event.set_field("secret", "s", kind=FieldKind.OBFUSCATED)
    event.set_field("n", 1)
    event.set_field("agent", "a", kind=FieldKind.HIGH_CARDINALITY)
    event.set_field("ip", "10.0.0.1", kind=FieldKind.OBFUSCATED)
    payload = payload_of(event)
    assert payload == {
        "obfuscated_data": {"secret": "s", "ip": "10.0.0.1"},
        "n": 1,
        "interana_excluded": {"agent": "a"},
    }
    assert list(payload) == ["obfuscated_data", "n", "interana_excluded"]


def test_every_field_is_readable_whatever_its_kind():
    event = Event("topic", "type")
    event.set_field("a", 1)
    event.set_field("b", 2, kind=FieldKind.OBFUSCATED)
    event.set_field("c", 3, kind=FieldKind.HIGH_CARDINALITY)
    assert [event.get_field(key) for key in "abcd"] == [1, 2, 3, None]


def test_setting_again_moves_the_field_between_sections():
    event = Event("topic", "type")
    event.set_field("f", 1, kind=FieldKind.HIGH_CARDINALITY)
    event.set_field("f", 2, kind=FieldKind.OBFUSCATED)
    assert payload_of(event) == {"obfuscated_data": {"f": 2}}
    event.set_field("f", 3)
    assert payload_of(event) == {"f": 3}


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_values_are_not_sent_and_keep_an_earlier_value(empty):
    event = Event("topic", "type")
    event.set_field("f", empty)
    assert payload_of(event) == {}
    event.set_field("f", "kept", kind=FieldKind.OBFUSCATED)
    event.set_field("f", empty)
    assert event.get_field("f") == "kept"
    assert payload_of(event) == {"obfuscated_data": {"f": "kept"}}


def test_obfuscate_is_deprecated_and_wins_over_kind():
    event = Event("topic", "type")
    with pytest.warns(DeprecationWarning, match="deprecated"):
        event.set_field("f", "v", obfuscate=True, kind=FieldKind.HIGH_CARDINALITY)
    assert payload_of(event) == {"obfuscated_data": {"f": "v"}}


def test_errors_share_a_base_and_say_what_went_wrong():
    too_large = EventTooLargeError(102401)
    assert isinstance(too_large, EventError)
    assert too_large.size == 102401
    assert "102401" in str(too_large)
    assert isinstance(EventQueueFullError(), EventError)


def test_debug_logger_writes_the_fields(caplog):
    caplog.set_level(logging.DEBUG, logger="baseplate.events.queue")
    DebugLogger().log(event_type="bucket", experiment="exp")
    assert "bucket" in caplog.text
    assert "exp" in caplog.text
    with pytest.raises(NotImplementedError):
        EventLogger().log(anything=1)
