"""Serializers for memcached values, and their paired deserializers.

Memcached stores bytes and a 16-bit number of client flags with each value.
These helpers turn Python values into ``(bytes, flags)`` and back, the flags
saying how the bytes were made, so that any client that knows the flags can
read the value. The flag bits and formats are those of the original
Baseplate (``tests/vectors/memcache.json`` holds cases recorded from it), so
a cache can be shared with services still running it, in both directions.

New services should pair :func:`make_dump_and_compress_fn` (JSON) with
:func:`decompress_and_load`. Services sharing a cache with r2 or another
``pylibmc`` user should pair :func:`make_pickle_and_compress_fn` with
:func:`decompress_and_unpickle`.

Pass the pair to :func:`~baseplate.context.memcache.pool_from_config` as
``serializer`` and ``deserializer``.
"""

from __future__ import annotations

import json
import logging
import pickle
import zlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "Flags",
    "PickleFlags",
    "decompress_and_load",
    "decompress_and_unpickle",
    "make_dump_and_compress_fn",
    "make_pickle_and_compress_fn",
]

logger = logging.getLogger(__name__)

#: A serializer: ``(key, value)`` to the bytes to store and their flags.
Serializer = Callable[[Any, Any], tuple[bytes, int]]

#: The pickle protocol written: 2 is the newest that Python 2 readers know.
PICKLE_PROTOCOL = 2


class Flags:
    """The client flags of :func:`make_dump_and_compress_fn`'s values.

    The server stores them with the value and hands them back untouched;
    each bit says one thing about how the bytes were made.
    """

    #: The bytes are JSON.
    JSON = 1 << 0
    #: The bytes are a decimal integer.
    INTEGER = 1 << 1
    #: The bytes are a decimal integer (Python 2's ``long``; only read).
    LONG = 1 << 2
    #: The bytes are zlib-compressed; the other bits describe them uncompressed.
    ZLIB = 1 << 3


class PickleFlags:
    """The client flags of :func:`make_pickle_and_compress_fn`'s values.

    The same bits as :class:`Flags`, with pickle in place of JSON: the
    values ``pylibmc`` writes.
    """

    #: The bytes are a pickle.
    PICKLE = 1 << 0
    #: The bytes are a decimal integer.
    INTEGER = 1 << 1
    #: The bytes are a decimal integer (Python 2's ``long``; only read).
    LONG = 1 << 2
    #: The bytes are zlib-compressed; the other bits describe them uncompressed.
    ZLIB = 1 << 3


def _check_compression(min_compress_length: int, compress_level: int) -> None:
    # AssertionError, as the original raised: a bad argument is a bug in the
    # program, not something to handle.
    if min_compress_length < 0:
        raise AssertionError(f"min_compress_length must be >= 0, not {min_compress_length}")
    if not 0 <= compress_level <= 9:
        raise AssertionError(f"compress_level must be from 0 to 9, not {compress_level}")


def _make_serializer(
    encode_other: Callable[[Any], bytes], min_compress_length: int, compress_level: int
) -> Serializer:
    """A serializer: text and bytes as they are, integers in decimal, the rest encoded.

    Values longer than ``min_compress_length`` bytes are compressed, unless
    either of it and ``compress_level`` is zero.
    """
    _check_compression(min_compress_length, compress_level)
    compress = bool(compress_level and min_compress_length)

    def serialize(key: Any, value: Any) -> tuple[bytes, int]:
        if isinstance(value, str):
            data, flags = value.encode("utf-8"), 0
        elif isinstance(value, bytes):
            data, flags = value, 0
        elif isinstance(value, int):  # bool too: True is stored as 1
            data, flags = b"%d" % value, Flags.INTEGER
        else:
            data, flags = encode_other(value), Flags.JSON  # PickleFlags.PICKLE, the same bit
        if compress and len(data) > min_compress_length:
            data, flags = zlib.compress(data, compress_level), flags | Flags.ZLIB
        return data, flags

    return serialize


def _deserialize(
    key: Any, data: Any, flags: int, decode_other: Callable[[Any], Any], format_name: str
) -> Any:
    """Undo a serializer: decompress, then read the bytes as the flags say.

    Bytes stored with no flags come back as bytes, even if they were text.
    Bytes that fail to decode as JSON or pickle give None rather than an
    error, so a value that cannot be read acts as a cache miss; bytes with
    flags of no known meaning are returned as they are.
    """
    if flags & Flags.ZLIB:
        data = zlib.decompress(data)
        flags ^= Flags.ZLIB
    if flags == 0:
        return data
    if flags in (Flags.INTEGER, Flags.LONG):
        return int(data)
    if flags == Flags.JSON:
        try:
            return decode_other(data)
        except Exception:
            logger.info("memcached value of %r is not valid %s", key, format_name, exc_info=True)
            return None
    logger.info("memcached value of %r has unrecognized flags %d", key, flags)
    return data


def _dump_json(value: Any) -> bytes:
    # json.dumps raises TypeError for values it cannot represent.
    return json.dumps(value).encode("utf-8")


def _dump_pickle(value: Any) -> bytes:
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def _load_json(data: Any) -> Any:
    return json.loads(data)


def _load_pickle(data: Any) -> Any:
    return pickle.loads(data)


def make_dump_and_compress_fn(min_compress_length: int = 0, compress_level: int = 1) -> Serializer:
    """Make a serializer.

    This should be paired with
    :func:`~baseplate.context.memcache.lib.decompress_and_load`.

    The resulting function stores text as UTF-8 and bytes as they are (flags
    0), integers in decimal (:attr:`Flags.INTEGER`) and everything else as
    :func:`json.dumps` does (:attr:`Flags.JSON`). Values that are not JSON
    serializable will result in a :exc:`TypeError`.

    :param min_compress_length: The minimum serialized length, in bytes,
        above which values are zlib-compressed (adding :attr:`Flags.ZLIB`).
        0 disables compression.
    :param compress_level: The zlib compression level. 0 disables compression
        and 9 is the maximum value.
    :returns: The serializer, a function of ``(key, value)`` returning
        ``(bytes, flags)``.
    :raises AssertionError: An argument is out of range.
    """
    return _make_serializer(_dump_json, min_compress_length, compress_level)


def decompress_and_load(key: Any, serialized: Any, flags: int) -> Any:
    """Deserialize data.

    This should be paired with
    :func:`~baseplate.context.memcache.lib.make_dump_and_compress_fn`.
    Text is returned as the bytes it was stored as; JSON that cannot be
    parsed gives None (and an INFO log line); unknown flags give the raw
    bytes.

    :param key: The memcached key.
    :param serialized: The serialized object returned from memcached.
    :param flags: The value stored and returned from memcached for the client
        to use to indicate how the value was serialized.
    :returns: The deserialized value.
    """
    return _deserialize(key, serialized, flags, _load_json, "JSON")


def make_pickle_and_compress_fn(
    min_compress_length: int = 0, compress_level: int = 1
) -> Serializer:
    """Make a serializer compatible with ``pylibmc`` readers.

    The resulting function is :func:`make_dump_and_compress_fn`'s, with
    :func:`pickle.dumps` (protocol 2, which Python 2 reads) in place of JSON.
    This should be paired with
    :func:`~baseplate.context.memcache.lib.decompress_and_unpickle`.

    .. warning:: This should only be used when sharing caches with applications
        using ``pylibmc`` (like r2). New applications should use the safer and
        future proofed
        :func:`~baseplate.context.memcache.lib.make_dump_and_compress_fn`.

    :param min_compress_length: The minimum serialized length, in bytes,
        above which values are zlib-compressed. 0 disables compression.
    :param compress_level: The zlib compression level. 0 disables compression
        and 9 is the maximum value.
    :returns: The serializer, a function of ``(key, value)`` returning
        ``(bytes, flags)``.
    :raises AssertionError: An argument is out of range.
    """
    return _make_serializer(_dump_pickle, min_compress_length, compress_level)


def decompress_and_unpickle(key: Any, serialized: Any, flags: int) -> Any:
    """Deserialize data stored by ``pylibmc``.

    .. warning:: This should only be used when sharing caches with applications
        using ``pylibmc`` (like r2). New applications should use the safer and
        future proofed
        :func:`~baseplate.context.memcache.lib.decompress_and_load`.
        Unpickling runs code chosen by whoever wrote the value: only read
        caches that nothing untrusted can write to.

    :param key: The memcached key.
    :param serialized: The serialized object returned from memcached.
    :param flags: The value stored and returned from memcached for the client
        to use to indicate how the value was serialized.
    :returns: The deserialized value; None for a pickle that cannot be read.
    """
    return _deserialize(key, serialized, flags, _load_pickle, "pickle")
