"""``tracing.exporter`` left out: the one destination given decides, and says so at INFO."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter

from baseplate import tracing_client_from_config
from baseplate.config import ConfigurationError
from baseplate.diagnostics.tracing import (
    LoggingRecorder,
    NullRecorder,
    RemoteRecorder,
    SidecarRecorder,
)
from bridge.export import ServiceNamingSpanExporter
from tests._helpers import fresh_queue_name

ZIPKIN = "http://127.0.0.1:9/api/v2/spans"
OTLP = "http://127.0.0.1:9/v1/traces"
TRACING_LOGGER = "baseplate.diagnostics.tracing"


def make(**keys: str):
    raw = {"tracing.service_name": "svc"}
    raw.update({f"tracing.{key.replace('__', '.')}": value for key, value in keys.items()})
    return tracing_client_from_config(raw)


def inferred(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == TRACING_LOGGER and record.levelno == logging.INFO
    ]


@pytest.mark.parametrize(
    ("exporter", "options", "exporter_class"),
    [
        ("zipkin", {"zipkin__endpoint": ZIPKIN}, ZipkinExporter),
        ("otlp", {"otlp__endpoint": OTLP}, OTLPSpanExporter),
    ],
)
def test_a_lone_new_endpoint_means_its_exporter(caplog, exporter, options, exporter_class):
    with caplog.at_level(logging.INFO, logger=TRACING_LOGGER):
        client = make(**options)
    assert isinstance(client.recorder, ServiceNamingSpanExporter)
    assert isinstance(client.recorder.exporter, exporter_class)
    assert inferred(caplog) == [
        f"tracing.exporter is not set: using {exporter}, as tracing.{exporter}.endpoint is set"
    ]


def test_the_originals_endpoint_keeps_its_meaning_the_remote_recorder(caplog):
    with caplog.at_level(logging.INFO, logger=TRACING_LOGGER):
        client = make(endpoint="127.0.0.1:9411")
    assert isinstance(client.recorder, RemoteRecorder)
    assert inferred(caplog) == [
        "tracing.exporter is not set: using remote, as tracing.endpoint is set"
    ]


def test_the_originals_queue_name_wins_over_its_endpoint_as_it_did(caplog):
    with fresh_queue_name("/traces-") as queue_name, caplog.at_level(logging.INFO, TRACING_LOGGER):
        client = make(queue_name=queue_name, endpoint="127.0.0.1:9411")
        assert isinstance(client.recorder, SidecarRecorder)
    assert inferred(caplog) == [
        "tracing.exporter is not set: using sidecar, as tracing.queue_name is set"
    ]


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (
            {"zipkin__endpoint": ZIPKIN, "otlp__endpoint": OTLP},
            "tracing.zipkin.endpoint and tracing.otlp.endpoint",
        ),
        (
            {"endpoint": "127.0.0.1:9411", "otlp__endpoint": OTLP},
            "tracing.endpoint and tracing.otlp.endpoint",
        ),
    ],
)
def test_a_new_endpoint_with_another_destination_needs_the_exporter_named(keys, named):
    with pytest.raises(ConfigurationError) as info:
        make(**keys)
    assert (info.value.key, info.value.error) == (
        "tracing.exporter",
        f"required when several destinations are set ({named})",
    )
    # Naming the exporter settles it.
    client = make(exporter="otlp", **keys)
    assert isinstance(client.recorder.exporter, OTLPSpanExporter)


def test_no_destination_logs_spans_or_drops_them_without_an_info_line(caplog):
    with caplog.at_level(logging.INFO, logger=TRACING_LOGGER):
        assert isinstance(make().recorder, LoggingRecorder)
        client = tracing_client_from_config({"tracing.service_name": "svc"}, False)
        assert isinstance(client.recorder, NullRecorder)
    assert inferred(caplog) == []
