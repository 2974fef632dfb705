"""``tracing.exporter`` names beyond the built-ins: OpenTelemetry's exporter entry points."""

from __future__ import annotations

import json
from types import SimpleNamespace

import posix_ipc
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind

from baseplate import tracing_client_from_config
from baseplate.config import ConfigurationError
from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics import tracing
from bridge.export import QUEUE_NAME_VARIABLE, ServiceNamingSpanExporter, SidecarSpanExporter


def test_exporters_lists_the_builtins_then_the_entry_points():
    names = tracing.EXPORTERS
    assert names[: len(tracing.BUILTIN_EXPORTERS)] == tracing.BUILTIN_EXPORTERS
    assert {"baseplate_sidecar", "console", "zipkin_json", "otlp_proto_http"} <= set(names)
    assert len(set(names)) == len(names)


def test_console_is_opentelemetrys_console_exporter_under_the_service_name():
    client = tracing.make_client("console-service", exporter="console")
    recorder = client.recorder
    assert isinstance(recorder, ServiceNamingSpanExporter)
    assert isinstance(recorder.exporter, ConsoleSpanExporter)
    assert recorder.service_name == "console-service"
    span = ReadableSpan(
        name="printed",
        context=SpanContext(1, 2, is_remote=False),
        kind=SpanKind.INTERNAL,
        resource=Resource({"service.name": "other"}),
        start_time=1,
        end_time=2,
    )
    assert recorder.export([span]) is SpanExportResult.SUCCESS


def test_config_accepts_an_entry_point_name():
    client = tracing_client_from_config(
        {"tracing.service_name": "svc", "tracing.exporter": "console"}
    )
    assert isinstance(client.recorder, ServiceNamingSpanExporter)
    assert isinstance(client.recorder.exporter, ConsoleSpanExporter)


def test_baseplate_sidecar_by_name_exports_under_the_clients_service(
    monkeypatch, queue_name, fresh_provider
):
    monkeypatch.setenv(QUEUE_NAME_VARIABLE, queue_name)
    client = tracing_client_from_config(
        {
            "tracing.service_name": "named-service",
            "tracing.exporter": "baseplate_sidecar",
            "tracing.sample_rate": "100%",
        }
    )
    assert isinstance(client.recorder, ServiceNamingSpanExporter)
    assert isinstance(client.recorder.exporter, SidecarSpanExporter)
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    trace_info = TraceInfo.from_upstream(0x77, 0x88, 0x99, True, None)
    with baseplate.make_server_span(SimpleNamespace(), "named", trace_info):
        pass
    assert client.flush(10)

    queue = posix_ipc.MessageQueue(f"/traces-{queue_name}", read=True, write=False)
    try:
        record = json.loads(queue.receive(timeout=10)[0])
    finally:
        queue.close()
    assert (record["traceId"], record["parentId"], record["id"]) == (0x77, 0x88, 0x99)
    assert record["name"] == "named"
    assert {a["endpoint"]["serviceName"] for a in record["annotations"]} == {"named-service"}


def test_an_unknown_name_lists_what_would_work():
    with pytest.raises(ValueError) as info:
        tracing.make_client("svc", exporter="kafka")
    message = str(info.value)
    assert "\n" not in message
    assert "'kafka'" in message
    for name in (*tracing.BUILTIN_EXPORTERS, "baseplate_sidecar", "console"):
        assert name in message


def test_config_refuses_an_unknown_name_by_its_key():
    with pytest.raises(ConfigurationError) as info:
        tracing_client_from_config({"tracing.service_name": "s", "tracing.exporter": "kafka"})
    assert info.value.key == "tracing.exporter"
    assert "baseplate_sidecar" in str(info.value)
