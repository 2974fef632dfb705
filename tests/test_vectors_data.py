"""The reference cases in ``tests/vectors/`` are complete and well-formed.

The wire-format tests read these files and nothing else, so a missing topic,
a file that no longer parses or a case without a field a test reads must
fail here, by name, rather than as a confusing error deep in a test (or as a
test that silently runs fewer cases). To take a newer set of cases from the
original's recordings, see ``scripts/refresh-vectors``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.vectors import VECTORS_DIR, load

TESTS_DIR = Path(__file__).parent

# The fields the tests read from every case, by topic and then by the case's
# ``kind`` (None for topics whose cases have no kind). Optional fields (read
# with ``case.get``, or only by some cases of a kind) are not listed.
REQUIRED_FIELDS: dict[str, dict[str | None, set[str]]] = {
    "crypto": {
        "make": {"secret", "message", "now", "max_age_seconds", "expected_signature"},
        "validate": {"secret", "message", "now", "signature", "expected"},
    },
    "edge": {
        "new": {"fields"},
        "from_upstream": {"header", "expected_view"},
    },
    "events": {
        "serialize": {"topic", "event_type", "timestamp", "id", "fields"},
        "queue_put": {
            "topic",
            "event_type",
            "timestamp",
            "id",
            "fields",
            "queue_name",
            "queue_full",
            "expected_mq",
        },
        "v2": {"fields", "expected_b64"},
    },
    "experiments": {None: {"name", "config", "calls"}},
    "headers": {None: {"headers", "trust", "expected"}},
    "memcache": {
        "serialize": {
            "serializer",
            "value",
            "min_compress_length",
            "compress_level",
            "expected_flags",
            "expected_plain_b64",
            "original_bytes_b64",
            "roundtrip_value",
        },
        "deserialize": {"deserializer", "serialized_b64", "flags", "expected_value"},
    },
    "metrics": {None: {"namespace", "ops", "expected_packets"}},
    "secrets": {None: {"file", "call", "path", "expected"}},
    "tracing": {None: {"service_name", "ops", "expected_records"}},
}

# Top-level entries besides ``format`` and ``cases`` that tests read.
EXTRA_ENTRIES = {"edge": {"keys"}}

# A call of ``load`` or ``cases`` (from tests.vectors) with a topic name as a string literal.
LOAD_CALL = re.compile(r"""\b(?:load|cases)\(\s*["'](\w+)["']\s*\)""")


def topics_the_tests_load() -> dict[str, set[str]]:
    """Each topic named in a test module that reads the vectors, with the modules naming it."""
    topics: dict[str, set[str]] = {}
    for path in TESTS_DIR.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if "tests.vectors import" not in source and "from tests import vectors" not in source:
            continue
        for topic in LOAD_CALL.findall(source):
            topics.setdefault(topic, set()).add(str(path.relative_to(TESTS_DIR)))
    return topics


def test_the_tests_load_vectors_and_only_known_topics():
    loaded = topics_the_tests_load()
    # A floor, so that a change in how tests call the loader cannot empty this check.
    assert {"crypto", "edge", "headers", "memcache", "metrics", "secrets", "tracing"} <= set(
        loaded
    ), loaded
    unknown = {topic: files for topic, files in loaded.items() if topic not in REQUIRED_FIELDS}
    assert not unknown, f"topics loaded by tests but not described in REQUIRED_FIELDS: {unknown}"


def test_every_file_in_the_folder_is_a_known_topic():
    files = {path.stem for path in VECTORS_DIR.glob("*.json")}
    assert files == set(REQUIRED_FIELDS), "a topic file is missing, or one is not described here"


@pytest.mark.parametrize("topic", sorted(REQUIRED_FIELDS))
def test_topic_file_is_complete_and_well_formed(topic):
    path = VECTORS_DIR / f"{topic}.json"
    assert path.is_file(), f"{path} is missing"
    try:
        data = load(topic)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{path} does not parse: {exc}")
    assert isinstance(data, dict), path
    assert isinstance(data.get("format"), str) and data["format"], f"{path}: no format"
    missing_entries = EXTRA_ENTRIES.get(topic, set()) - set(data)
    assert not missing_entries, f"{path}: no {sorted(missing_entries)}"
    cases = data.get("cases")
    assert isinstance(cases, list) and cases, f"{path}: no cases"

    descriptions = [case.get("desc") for case in cases]
    assert all(isinstance(desc, str) and desc for desc in descriptions), (
        f"{path}: a case has no desc"
    )
    assert len(set(descriptions)) == len(descriptions), f"{path}: two cases share a desc"

    required = REQUIRED_FIELDS[topic]
    seen_kinds = set()
    for case in cases:
        kind = case.get("kind")
        seen_kinds.add(kind)
        assert kind in required, f"{path}: case {case['desc']!r} has an unknown kind {kind!r}"
        missing = required[kind] - set(case)
        assert not missing, f"{path}: case {case['desc']!r} lacks {sorted(missing)}"
    assert seen_kinds == set(required), f"{path}: no case of kind {set(required) - seen_kinds}"
