"""``baseplate.context.memcache.lib``: the original's bytes and flags, both ways (vectors)."""

from __future__ import annotations

import base64
import logging
import zlib
from typing import Any

import pytest
from pymemcache.client.base import Client

from baseplate.context.memcache import lib, pool_from_config
from tests import vectors
from tests.context.memcached_server import running_memcached

SERIALIZERS = {
    "dump": lib.make_dump_and_compress_fn,
    "pickle": lib.make_pickle_and_compress_fn,
}
DESERIALIZERS = {
    "dump": lib.decompress_and_load,
    "pickle": lib.decompress_and_unpickle,
}


def decode(value: Any) -> Any:
    """A vector value as Python: ``{"$bytes": b64}`` and ``{"$tuple": [...]}`` decoded."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$tuple"}:
            return tuple(decode(item) for item in value["$tuple"])
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def typed(value: Any) -> Any:
    """``value`` with the type of every part alongside, so that 1 != True != 1.0."""
    if isinstance(value, (list, tuple)):
        return (type(value), [typed(item) for item in value])
    if isinstance(value, dict):
        return (dict, {key: typed(item) for key, item in value.items()})
    return (type(value), value)


def serialize_cases() -> list[Any]:
    return [case for case in vectors.cases("memcache") if case.values[0]["kind"] == "serialize"]


def deserialize_cases() -> list[Any]:
    return [case for case in vectors.cases("memcache") if case.values[0]["kind"] == "deserialize"]


def test_the_vectors_cover_both_families_and_directions():
    assert {case.values[0]["serializer"] for case in serialize_cases()} == {"dump", "pickle"}
    assert {case.values[0]["deserializer"] for case in deserialize_cases()} == {"dump", "pickle"}


@pytest.mark.parametrize("case", serialize_cases())
def test_serialize_vector(case):
    serialize = SERIALIZERS[case["serializer"]](case["min_compress_length"], case["compress_level"])
    data, flags = serialize("key", decode(case["value"]))

    assert flags == case["expected_flags"]
    assert type(data) is bytes
    plain = zlib.decompress(data) if flags & lib.Flags.ZLIB else data
    assert plain == base64.b64decode(case["expected_plain_b64"])
    original = base64.b64decode(case["original_bytes_b64"])
    if not flags & lib.Flags.ZLIB:
        assert data == original  # byte for byte what the original stored

    deserialize = DESERIALIZERS[case["serializer"]]
    expected = typed(decode(case["roundtrip_value"]))
    assert typed(deserialize("key", data, flags)) == expected
    assert typed(deserialize("key", original, flags)) == expected


@pytest.mark.parametrize("case", deserialize_cases())
def test_deserialize_vector(case):
    deserialize = DESERIALIZERS[case["deserializer"]]
    value = deserialize("key", base64.b64decode(case["serialized_b64"]), case["flags"])
    assert typed(value) == typed(decode(case["expected_value"]))


def test_values_are_shared_with_the_original_through_memcached():
    """Through a real server: what the original stored reads back, and ours is stored as it was."""
    with running_memcached() as server:
        raw = Client(
            ("127.0.0.1", server.port), deserializer=lambda key, data, flags: (data, flags)
        )
        for number, param in enumerate(serialize_cases()):
            case = param.values[0]
            deserialize = DESERIALIZERS[case["serializer"]]
            ours = pool_from_config(
                {"memcache.endpoint": server.endpoint},
                serializer=SERIALIZERS[case["serializer"]](
                    case["min_compress_length"], case["compress_level"]
                ),
                deserializer=deserialize,
            )
            expected = typed(decode(case["roundtrip_value"]))
            original = base64.b64decode(case["original_bytes_b64"])
            raw.set(f"theirs-{number}", original, noreply=False, flags=case["expected_flags"])
            assert typed(ours.get(f"theirs-{number}")) == expected, case["desc"]

            ours.set(f"ours-{number}", decode(case["value"]), noreply=False)
            data, flags = raw.get(f"ours-{number}")
            assert flags == case["expected_flags"], case["desc"]
            assert typed(deserialize("key", data, flags)) == expected, case["desc"]
            ours.close()
        raw.close()


# -- beyond the vectors ---------------------------------------------------------------


def test_the_flag_values_are_the_originals():
    assert (lib.Flags.JSON, lib.Flags.INTEGER, lib.Flags.LONG, lib.Flags.ZLIB) == (1, 2, 4, 8)
    assert (
        lib.PickleFlags.PICKLE,
        lib.PickleFlags.INTEGER,
        lib.PickleFlags.LONG,
        lib.PickleFlags.ZLIB,
    ) == (1, 2, 4, 8)


def test_values_json_cannot_represent_are_a_type_error():
    serialize = lib.make_dump_and_compress_fn()
    with pytest.raises(TypeError):
        serialize("key", object())


def test_pickle_keeps_python_types_json_does_not():
    value = {"when": (1, 2), "raw": b"\x00"}
    pickled = lib.make_pickle_and_compress_fn()("key", value)
    assert lib.decompress_and_unpickle("key", *pickled) == value
    with pytest.raises(TypeError):
        lib.make_dump_and_compress_fn()("key", value)  # bytes are not JSON


@pytest.mark.parametrize("maker", SERIALIZERS.values(), ids=SERIALIZERS.keys())
@pytest.mark.parametrize(
    ("min_compress_length", "compress_level"), [(-1, 1), (0, -1), (0, 10)], ids=str
)
def test_out_of_range_arguments_are_rejected(maker, min_compress_length, compress_level):
    with pytest.raises(AssertionError):
        maker(min_compress_length, compress_level)


@pytest.mark.parametrize("name", DESERIALIZERS.keys())
def test_an_unreadable_value_is_a_miss_and_logged(name, caplog):
    caplog.set_level(logging.INFO, logger="baseplate.context.memcache.lib")
    assert DESERIALIZERS[name]("broken-key", b"\xff not this", 1) is None
    (record,) = caplog.records
    assert "broken-key" in record.getMessage()
    assert record.exc_info is not None


def test_a_corrupt_compressed_value_raises_zlibs_error():
    with pytest.raises(zlib.error):
        lib.decompress_and_load("key", b"not zlib", lib.Flags.ZLIB)
