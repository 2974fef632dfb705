"""Each export path against a local stand-in that decodes what arrives."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import posix_ipc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from baseplate import tracing_client_from_config
from baseplate.config import ConfigurationError
from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics.tracing import NullRecorder, TracingClient
from bridge.export import PosixQueueSpanExporter
from tests._helpers import run_python
from tests.diagnostics.tracing.standins import tracing_client_to

SCHEMA = json.loads((Path(__file__).parent / "zipkin_v2_span.schema.json").read_text())


def serve_request(client: TracingClient, trace_info: TraceInfo | None = None, fail: bool = False):
    """One request: a server span with a client child and a local child."""
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    server = baseplate.make_server_span(SimpleNamespace(), "get_thing", trace_info)
    with server:
        with server.make_child("db.query") as child:
            child.set_tag("rows", 3)
        with server.make_child("render", local=True, component_name="templates"):
            pass
        if fail:
            try:
                raise ValueError("request failed")
            except ValueError:
                server.finish(exc_info=sys.exc_info())
    return server


def test_zipkin_direct_validates_against_the_v2_schema(collector, fresh_provider):
    client = tracing_client_to(collector.port, "zipkin", service_name="thing-service")
    server = serve_request(client)
    assert client.flush(10)
    requests = collector.wait_for(1)

    spans = []
    for path, headers, body in requests:
        assert path == "/api/v2/spans"
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        jsonschema.validate(payload, SCHEMA)
        spans.extend(payload)

    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"get_thing", "db.query", "render"}
    server_id = f"{server.id:016x}"
    assert by_name["get_thing"]["id"] == server_id
    assert by_name["get_thing"]["kind"] == "SERVER"
    assert by_name["db.query"]["parentId"] == server_id
    assert by_name["db.query"]["kind"] == "CLIENT"
    assert by_name["db.query"]["tags"]["rows"] == "3"
    assert by_name["render"]["parentId"] == server_id
    assert by_name["render"]["tags"]["lc"] == "templates"
    assert {span["traceId"] for span in spans} == {by_name["get_thing"]["traceId"]}
    assert int(by_name["get_thing"]["traceId"], 16) == server.trace_id
    assert {span["localEndpoint"]["serviceName"] for span in spans} == {"thing-service"}


def test_otlp_decodes_with_the_proto_messages(collector, fresh_provider):
    client = tracing_client_to(collector.port, "otlp", service_name="thing-service")
    server = serve_request(client, TraceInfo.from_upstream(1234, 2345, 3456, True, None))
    assert client.flush(10)
    requests = collector.wait_for(1)

    spans = {}
    for path, headers, body in requests:
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf", headers
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attributes["service.name"] == "thing-service"
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.name] = span

    assert set(spans) == {"get_thing", "db.query", "render"}
    as_int = lambda raw: int.from_bytes(raw, "big")  # noqa: E731
    assert as_int(spans["get_thing"].trace_id) == 1234
    assert as_int(spans["get_thing"].span_id) == 3456 == server.id
    assert as_int(spans["get_thing"].parent_span_id) == 2345
    for child in ("db.query", "render"):
        assert as_int(spans[child].parent_span_id) == 3456
        assert as_int(spans[child].trace_id) == 1234


def test_legacy_remote_recorder_posts_v1_records(collector, fresh_provider):
    client = tracing_client_from_config(
        {
            "tracing.service_name": "svc",
            "tracing.endpoint": f"127.0.0.1:{collector.port}",
            "tracing.sample_rate": "100%",
        }
    )
    serve_request(client, TraceInfo.from_upstream(1, 2, 3, True, None))
    assert client.flush(10)
    path, headers, body = collector.wait_for(1)[0]
    assert path == "/api/v1/spans"
    assert headers["content-type"] == "application/json"
    records = json.loads(body)
    assert [r["name"] for r in records] == ["db.query", "render", "get_thing"]
    assert records[-1]["id"] == 3 and records[-1]["parentId"] == 2 and records[-1]["traceId"] == 1


def test_unconfigured_client_logs_spans(fresh_provider, caplog):
    client = tracing_client_from_config({"tracing.service_name": "svc"})
    with caplog.at_level(logging.DEBUG, logger="bridge.export"):
        serve_request(client, TraceInfo.from_upstream(1, 2, 3, True, None))
        assert client.flush(10)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("span: ")]
    assert len(logged) == 3
    assert json.loads(logged[-1].removeprefix("span: "))["name"] == "get_thing"


def test_unconfigured_client_can_discard_silently(fresh_provider, caplog):
    client = tracing_client_from_config({"tracing.service_name": "svc"}, log_if_unconfigured=False)
    assert isinstance(client.recorder, NullRecorder)
    with caplog.at_level(logging.DEBUG, logger="bridge.export"):
        serve_request(client, TraceInfo.from_upstream(1, 2, 3, True, None))
        assert client.flush(10)
    assert not [r for r in caplog.records if r.getMessage().startswith("span: ")]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "tracing.service_name"),
        ({"tracing.service_name": "s", "tracing.sample_rate": "150%"}, "tracing.sample_rate"),
        ({"tracing.service_name": "s", "tracing.exporter": "kafka"}, "tracing.exporter"),
        ({"tracing.service_name": "s", "tracing.tail.slower_than": "soon"}, "tracing.tail"),
        ({"tracing.service_name": "s", "tracing.endpoint": "nohost"}, "tracing.endpoint"),
        # Numbers the batch processor would refuse on the first request.
        ({"tracing.service_name": "s", "tracing.max_span_queue_size": "0"}, "tracing.max_span"),
        ({"tracing.service_name": "s", "tracing.max_span_queue_size": "-5"}, "tracing.max_span"),
        (
            {"tracing.service_name": "s", "tracing.span_batch_interval": "0 seconds"},
            "tracing.span_batch_interval",
        ),
        # A name no queue can have: refused before anything is created.
        ({"tracing.service_name": "s", "tracing.queue_name": "a/b"}, "tracing.queue_name"),
        ({"tracing.service_name": "s", "tracing.queue_name": "x" * 300}, "tracing.queue_name"),
    ],
)
def test_bad_configuration_names_the_key(raw, key, caplog):
    with pytest.raises(ConfigurationError) as info:
        tracing_client_from_config(raw)
    assert info.value.key.startswith(key)
    assert "\n" not in str(info.value)
    assert not [record for record in caplog.records if "created" in record.getMessage()]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_span_queue_size": 0},
        {"span_batch_interval": timedelta(0)},
        {"span_batch_interval": timedelta(seconds=-1)},
    ],
)
def test_tracing_client_refuses_numbers_the_batch_processor_would(kwargs):
    with pytest.raises(ValueError, match="must be"):
        TracingClient("svc", 1.0, NullRecorder(), **kwargs)


def test_span_queue_over_the_users_queue_space_names_the_limit(queue_name):
    """RLIMIT_MSGQUEUE used up: the error says so, not "too many open files"."""
    script = f"""
import resource
from bridge.export import open_span_queue
resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
try:
    open_span_queue({queue_name + "-fresh"!r})
except OSError as exc:
    print(exc)
"""
    done = run_python("-c", script)
    assert "RLIMIT_MSGQUEUE" in done.stdout, done.stdout + done.stderr
    assert "created" not in done.stderr


@pytest.mark.parametrize(
    ("exporter", "key"),
    [
        ("sidecar", "tracing.queue_name"),
        ("remote", "tracing.endpoint"),
        ("zipkin", "tracing.zipkin.endpoint"),
        ("otlp", "tracing.otlp.endpoint"),
    ],
)
def test_exporter_without_its_destination_is_a_configuration_error(exporter, key):
    with pytest.raises(ConfigurationError) as info:
        tracing_client_from_config({"tracing.service_name": "s", "tracing.exporter": exporter})
    assert (info.value.key, info.value.error) == (key, f"required by tracing.exporter = {exporter}")


def test_sample_rate_accepts_percent_and_fraction():
    for value, expected in (("37%", 0.37), ("0.25", 0.25)):
        client = tracing_client_from_config(
            {"tracing.service_name": "s", "tracing.sample_rate": value}, log_if_unconfigured=False
        )
        assert client.sample_rate == expected


# -- faults: nothing blocks a request, nothing raises into it, drops are counted ----------


@pytest.fixture
def tiny_queue():
    name = f"bp-test-{uuid.uuid4().hex[:12]}"
    queue = posix_ipc.MessageQueue(
        f"/traces-{name}", flags=posix_ipc.O_CREX, max_messages=2, max_message_size=8192
    )
    yield name
    queue.close()
    queue.unlink()


def test_full_queue_drops_and_counts(tiny_queue, fresh_provider):
    client = tracing_client_from_config(
        {"tracing.service_name": "svc", "tracing.queue_name": tiny_queue}
    )
    for _ in range(5):  # 3 spans each into a queue of 2 nobody reads
        serve_request(client, TraceInfo.from_upstream(1, 2, 3, True, None))
    # The exporter got through all 15 spans: a send into the full queue never blocked it.
    assert client.flush(10)
    assert isinstance(client.recorder, PosixQueueSpanExporter)
    assert client.recorder.dropped_spans == 13


def unused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("exporter", ["zipkin", "otlp", "remote"])
def test_endpoint_down_never_reaches_the_request(exporter, fresh_provider, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # the exporter retries until then
    client = tracing_client_to(unused_port(), exporter)
    export_threads = []
    export = client.recorder.export

    def watched_export(spans):
        export_threads.append(threading.current_thread())
        return export(spans)

    monkeypatch.setattr(client.recorder, "export", watched_export)
    for _ in range(20):
        serve_request(client)  # raises nothing
    client.flush(10)
    assert export_threads, "the spans were handed to the exporter"
    assert threading.current_thread() not in export_threads, "exports run off the request path"
    assert client.dropped_spans == 20 * 3


def test_slow_endpoint_does_not_slow_requests(collector, fresh_provider):
    client = tracing_client_to(
        collector.port, extra={"tracing.span_batch_interval": "1 millisecond"}
    )
    collector.hold()
    serve_request(client)
    collector.wait_for(1)  # an export is under way, waiting for its answer
    for _ in range(10):
        serve_request(client)
    assert collector.answered == 0, "the requests were served while the export waited"
    collector.release()
    assert client.flush(10)
    assert sum(len(json.loads(body)) for _, _, body in collector.requests) == 33


# -- tail sampling --------------------------------------------------------------------------


def tail_client(collector, **keys):
    return tracing_client_to(collector.port, sample_rate="0%", extra=keys)


def exported_names(collector, client):
    assert client.flush(10)
    return sorted(span["name"] for _, _, body in collector.requests for span in json.loads(body))


def test_tail_sampling_exports_failed_unsampled_traces(collector, fresh_provider):
    client = tail_client(collector, **{"tracing.tail.errors": "true"})
    serve_request(client)
    serve_request(client, fail=True)
    assert exported_names(collector, client) == ["db.query", "get_thing", "render"]
    payload = [span for _, _, body in collector.requests for span in json.loads(body)]
    assert all(span["tags"]["baseplate.tail_sampled"] == "true" for span in payload)
    processor = client.processor
    assert processor.held_traces() == 0


def test_tail_sampling_exports_slow_traces(collector, fresh_provider, monkeypatch):
    client = tail_client(collector, **{"tracing.tail.slower_than": "50 milliseconds"})
    serve_request(client)
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    with baseplate.make_server_span(SimpleNamespace(), "slow"):
        time.sleep(0.06)
    assert exported_names(collector, client) == ["slow"]


def test_without_tail_sampling_unsampled_traces_are_not_exported(collector, fresh_provider):
    client = tail_client(collector)
    serve_request(client, fail=True)
    assert exported_names(collector, client) == []


def test_tail_sampling_caps_memory(fresh_provider, collector):
    client = tail_client(collector, **{"tracing.tail.errors": "true"})
    client.install()
    processor = client.processor
    processor.max_spans_per_trace = 1
    serve_request(client, fail=True)
    assert processor.dropped_spans == 1
    assert exported_names(collector, client) == ["db.query", "get_thing"]


def test_client_reports_sampled_decision_on_the_server_span(fresh_provider):
    client = TracingClient("svc", 1.0, None)
    server = serve_request(client)
    assert server.sampled is True
    client_zero = TracingClient("svc", 0.0, None)
    assert serve_request(client_zero).sampled is False


def test_batch_interval_config_is_used(fresh_provider):
    client = tracing_client_from_config(
        {"tracing.service_name": "s", "tracing.span_batch_interval": "2 seconds"}
    )
    assert client.span_batch_interval == timedelta(seconds=2)


def test_record_longer_than_the_queue_allows_is_dropped_and_counted(tiny_queue, fresh_provider):
    client = tracing_client_from_config(
        {"tracing.service_name": "svc", "tracing.queue_name": tiny_queue}
    )
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    info = TraceInfo.from_upstream(1, 2, 3, True, None)
    with baseplate.make_server_span(SimpleNamespace(), "big", info) as server:
        server.set_tag("blob", "x" * 9000)
    with baseplate.make_server_span(SimpleNamespace(), "small", info):
        pass
    assert client.flush(10)
    assert client.recorder.dropped_spans == 1
    queue = posix_ipc.MessageQueue(f"/traces-{tiny_queue}")
    message, _ = queue.receive(timeout=0)
    queue.close()
    assert json.loads(message)["name"] == "small"
