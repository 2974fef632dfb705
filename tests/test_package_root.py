"""What the original's package root exported, and what importing it costs."""

from __future__ import annotations

import warnings

import pytest

import baseplate
from baseplate.metrics import Client
from tests._helpers import run_python


def printed_by(code: str) -> str:
    return run_python("-c", code).stdout.strip()


def test_baseplate_imports_from_the_root_in_a_fresh_process():
    assert printed_by("from baseplate import Baseplate; print(Baseplate.__module__)") == (
        "baseplate.core._baseplate"
    )


def test_importing_the_root_does_not_load_opentelemetry():
    loaded = printed_by(
        "import sys, baseplate; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    )
    assert loaded == "[]"


def test_root_exports_the_originals_names():
    from baseplate import config, metrics, tracing
    from baseplate.core import Baseplate
    from baseplate.diagnostics import tracing as tracing_module

    assert baseplate.Baseplate is Baseplate
    assert tracing is tracing_module
    assert config is baseplate.config and metrics is baseplate.metrics
    for name in baseplate.__all__:
        assert getattr(baseplate, name) is not None


def test_unknown_root_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = baseplate.no_such_thing  # type: ignore[attr-defined]


def test_make_metrics_client_is_deprecated_but_works():
    with pytest.warns(DeprecationWarning, match="metrics_client_from_config") as caught:
        client = baseplate.make_metrics_client({"metrics.namespace": "ns"})
    assert isinstance(client, Client)
    # The warning points at the caller, not at baseplate.
    assert caught[0].filename == __file__


def test_make_tracing_client_is_deprecated_but_works(spans):
    with pytest.warns(DeprecationWarning, match="tracing_client_from_config"):
        client = baseplate.make_tracing_client({"tracing.service_name": "svc"})
    assert client.service_name == "svc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        baseplate.tracing_client_from_config({"tracing.service_name": "svc"})
