"""A client module whose library is missing says which extra installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    ("baseplate.context.hvac", "hvac", "vault"),
    ("baseplate.context.kombu", "kombu", "amqp"),
    ("baseplate.context.memcache", "pymemcache", "memcache"),
    ("baseplate.context.redis", "redis", "redis"),
    ("baseplate.context.sqlalchemy", "sqlalchemy", "sql"),
    ("baseplate.context.cassandra", "cassandra", "cassandra"),
    ("baseplate.queue_consumer", "kombu", "amqp"),
    ("baseplate.live_data.zookeeper", "kazoo", "zookeeper"),
    ("baseplate.integration.pyramid", "pyramid", "pyramid"),
    ("baseplate.diagnostics.sentry", "sentry_sdk", "sentry"),
    ("baseplate.secrets.fetcher", "hvac", "vault"),
]


@pytest.mark.parametrize(("module", "library", "extra"), MODULES)
def test_a_missing_library_names_the_extra(module, library, extra):
    # A None in sys.modules makes every import of the library fail, as if it
    # were not installed; a fresh interpreter keeps the block to this test.
    program = (
        f"import sys; sys.modules[{library!r}] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as error:\n    print(error)\n"
        "else:\n    print('imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().endswith(
        f"install baseplate[{extra}] (pip install 'baseplate[{extra}]')"
    ), result.stdout
