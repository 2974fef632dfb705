"""Baseplate's pieces as OpenTelemetry entry points, loaded the way the SDK loads them.

``OTEL_PYTHON_ID_GENERATOR=baseplate``, ``OTEL_TRACES_SAMPLER=baseplate`` and
``OTEL_TRACES_EXPORTER=baseplate_sidecar`` go through the SDK's configuration
helpers; the last test runs ``opentelemetry-instrument`` for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import posix_ipc
import pytest
from opentelemetry.sdk._configuration import (
    _import_exporters,
    _import_id_generator,
    _import_sampler,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind

from bridge.export import QUEUE_NAME_VARIABLE, SidecarSpanExporter
from bridge.ids import MAX_ID, BaseplateIdGenerator
from bridge.sampling import BaseplateSampler, sampler_from_argument

VENV_BIN = Path(sys.executable).parent


def read_records(queue_name: str, count: int) -> list[dict]:
    queue = posix_ipc.MessageQueue(f"/traces-{queue_name}", read=True, write=False)
    try:
        return [json.loads(queue.receive(timeout=10)[0]) for _ in range(count)]
    finally:
        queue.close()


def finished_span(name: str, service: str | None, span_id: int = 0x42) -> ReadableSpan:
    attributes = {} if service is None else {"service.name": service}
    return ReadableSpan(
        name=name,
        context=SpanContext(0x1234, span_id, is_remote=False),
        kind=SpanKind.SERVER,
        resource=Resource(attributes),
        start_time=1_000_000_000,
        end_time=1_002_000_000,
    )


def test_id_generator_loads_through_the_sdk():
    generator = _import_id_generator("baseplate")
    assert isinstance(generator, BaseplateIdGenerator)
    ids = [generator.generate_trace_id() for _ in range(200)]
    assert all(0 < value <= MAX_ID for value in ids)
    assert len(set(ids)) == 200


@pytest.mark.parametrize(("argument", "ratio"), [("0.25", 0.25), ("0", 0.0), (" 1 ", 1.0)])
def test_sampler_takes_its_ratio_from_the_argument(monkeypatch, argument, ratio):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", argument)
    sampler = _import_sampler("baseplate")
    assert isinstance(sampler, BaseplateSampler)
    assert sampler.root_ratio == ratio


@pytest.mark.parametrize("argument", [None, ""])
def test_sampler_without_an_argument_samples_every_root(monkeypatch, argument):
    if argument is None:
        monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    else:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", argument)
    sampler = _import_sampler("baseplate")
    assert isinstance(sampler, BaseplateSampler)
    assert sampler.root_ratio == 1.0


@pytest.mark.parametrize("argument", ["often", "1.5", "-0.1", "nan", "25%"])
def test_a_bad_sampler_argument_is_refused(monkeypatch, argument):
    with pytest.raises(ValueError) as info:
        sampler_from_argument(argument)
    message = str(info.value)
    assert "OTEL_TRACES_SAMPLER_ARG" in message
    assert repr(argument) in message
    assert "\n" not in message
    # The SDK logs the refusal and keeps its default sampler.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", argument)
    assert _import_sampler("baseplate") is None


def test_sidecar_exporter_loads_through_the_sdk(monkeypatch, queue_name):
    traces, metrics, logs = _import_exporters(["baseplate_sidecar"], [], [])
    assert traces == {"baseplate_sidecar": SidecarSpanExporter}
    assert metrics == {} and logs == {}
    monkeypatch.setenv(QUEUE_NAME_VARIABLE, queue_name)
    exporter = traces["baseplate_sidecar"]()
    try:
        assert exporter.queue.name == f"/traces-{queue_name}"
        exporter.export([finished_span("get", "svc-a", 1), finished_span("put", "svc-b", 2)])
    finally:
        exporter.shutdown()
    first, second = read_records(queue_name, 2)
    assert (first["name"], first["id"]) == ("get", 1)
    assert first["annotations"][0]["endpoint"]["serviceName"] == "svc-a"
    assert (second["name"], second["id"]) == ("put", 2)
    assert second["annotations"][0]["endpoint"]["serviceName"] == "svc-b"
    assert second["annotations"][0]["value"] == "sr"


def test_sidecar_exporter_keeps_one_encoder_per_service(queue_name):
    exporter = SidecarSpanExporter(queue_name)
    try:
        exporter.export([finished_span("a", "svc", 1), finished_span("b", "svc", 2)])
        exporter.export([finished_span("c", None, 3)])
    finally:
        exporter.shutdown()
    assert sorted(exporter._encoders) == ["svc", "unknown_service"]
    records = read_records(queue_name, 3)
    services = [record["annotations"][0]["endpoint"]["serviceName"] for record in records]
    assert services == ["svc", "svc", "unknown_service"]


def test_a_given_service_name_wins_over_the_resource(queue_name):
    exporter = SidecarSpanExporter(queue_name, service_name="fixed", ipv4="10.1.2.3")
    try:
        exporter.export([finished_span("a", "resource-name")])
    finally:
        exporter.shutdown()
    (record,) = read_records(queue_name, 1)
    assert record["annotations"][0]["endpoint"] == {"serviceName": "fixed", "ipv4": "10.1.2.3"}


def test_the_default_queue_is_the_publishers_default(monkeypatch):
    monkeypatch.delenv(QUEUE_NAME_VARIABLE, raising=False)
    try:
        posix_ipc.MessageQueue("/traces-main").close()
        existed = True
    except posix_ipc.ExistentialError:
        existed = False
    exporter = SidecarSpanExporter()
    try:
        assert exporter.queue.name == "/traces-main"
    finally:
        exporter.shutdown()
        if not existed:
            posix_ipc.unlink_message_queue("/traces-main")


SCRIPT = """
import json
from opentelemetry import trace

tracer = trace.get_tracer("entry-point-test")
with tracer.start_as_current_span("plain-otel-operation", kind=trace.SpanKind.SERVER) as span:
    span.set_attribute("answer", 42)
    context = span.get_span_context()
provider = trace.get_tracer_provider()
print(json.dumps({
    "trace_id": context.trace_id,
    "span_id": context.span_id,
    "sampler": provider.sampler.get_description(),
    "id_generator": type(provider.id_generator).__name__,
}))
provider.shutdown()
"""


def test_opentelemetry_instrument_exports_to_the_sidecar_queue(queue_name, tmp_path):
    script = tmp_path / "traced.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OTEL_TRACES_EXPORTER": "baseplate_sidecar",
        "OTEL_TRACES_SAMPLER": "baseplate",
        "OTEL_TRACES_SAMPLER_ARG": "1",
        "OTEL_PYTHON_ID_GENERATOR": "baseplate",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "instrumented-service",
        QUEUE_NAME_VARIABLE: queue_name,
    }
    result = subprocess.run(
        [str(VENV_BIN / "opentelemetry-instrument"), "python", str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert reported["sampler"] == "BaseplateSampler{root_ratio=1.0}"
    assert reported["id_generator"] == "BaseplateIdGenerator"
    assert 0 < reported["trace_id"] <= MAX_ID

    (record,) = read_records(queue_name, 1)
    assert record["name"] == "plain-otel-operation"
    assert record["traceId"] == reported["trace_id"]
    assert record["id"] == reported["span_id"]
    assert 0 < record["id"] <= MAX_ID
    assert record["parentId"] == 0
    assert [a["value"] for a in record["annotations"]] == ["sr", "ss"]
    assert record["binaryAnnotations"][0]["key"] == "answer"
    assert record["binaryAnnotations"][0]["value"] == "42"
    endpoints = [a["endpoint"] for a in record["annotations"] + record["binaryAnnotations"]]
    assert {endpoint["serviceName"] for endpoint in endpoints} == {"instrumented-service"}
