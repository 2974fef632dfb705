"""Bucketing, which the r2 and simple experiments share: the wire contract of the experiments file.

Any two Baseplate services must put a given input in the same bucket, so
:func:`bucket` is the original's function exactly: SHA-1 of the seed
immediately followed by the bucketing value (both as ``str()`` writes them,
UTF-8), read as a big-endian integer, modulo the number of buckets.
"""

from __future__ import annotations

import hashlib
from typing import Any

from baseplate.experiments.providers.base import Experiment


def bucket(seed: object, value: object, num_buckets: int) -> int:
    """The bucket of ``value`` in an experiment seeded with ``seed``.

    >>> bucket("11.single_exp.0", "t2_abc", 1000)
    693
    """
    digest = hashlib.sha1(f"{seed!s}{value!s}".encode()).digest()
    return int.from_bytes(digest, "big") % num_buckets


class BucketingExperiment(Experiment):
    """An experiment that buckets by one named input: the r2 and simple experiments.

    Both put an input in a bucket with :func:`bucket` and identify a
    bucketing event by the experiment's name, the input's name and its value
    (``name:bucket_val:value``), as the original's did: both are part of what
    other services and the event pipeline rely on, so they are written here
    once. A subclass sets ``name``, ``bucket_val`` (the name of the input to
    bucket by), ``num_buckets`` and ``seed``.
    """

    name: str
    bucket_val: str
    num_buckets: int
    seed: Any

    def get_unique_id(self, **kwargs: Any) -> str | None:
        value = kwargs.get(self.bucket_val)
        if value:
            return f"{self.name}:{self.bucket_val}:{value!s}"
        return None

    def _calculate_bucket(self, bucket_val: Any) -> int:
        """Sort a bucketing value (in most cases an account's fullname) into a bucket.

        The experiment's seed is mixed in so the same users don't land in the
        same bucket of every experiment.
        """
        return bucket(self.seed, bucket_val, self.num_buckets)
