"""The one bucketing function every provider uses: the wire contract of the experiments file.

Any two Baseplate services must put a given input in the same bucket, so
this is the original's function exactly: SHA-1 of the seed immediately
followed by the bucketing value (both as ``str()`` writes them, UTF-8),
read as a big-endian integer, modulo the number of buckets.
"""

from __future__ import annotations

import hashlib


def bucket(seed: object, value: object, num_buckets: int) -> int:
    """The bucket of ``value`` in an experiment seeded with ``seed``.

    >>> bucket("11.single_exp.0", "t2_abc", 1000)
    693
    """
    digest = hashlib.sha1(f"{seed!s}{value!s}".encode()).digest()
    return int.from_bytes(digest, "big") % num_buckets
