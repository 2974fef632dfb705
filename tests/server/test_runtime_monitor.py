"""The runtime monitor and per-request cost, in real ``baseplate-serve`` processes.

The application makes its server spans through the facade, writes every
finished span as a JSON line to a file (an exporter standing in for a
collector) and sends its metrics to a :class:`~baseplate.testing.StatsdCapture`.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import re
import time

import gevent
import gevent.pool
import pytest

from baseplate import Baseplate, config, metrics_client_from_config
from baseplate.core import ServerSpan, Span
from baseplate.server import runtime_monitor
from tests._helpers import wait_until
from tests.server import http_get, write_files

APP = """
import json
import time

import gevent
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from baseplate import Baseplate, metrics_client_from_config
from baseplate.core import TraceInfo
from bridge import provider
from bridge.ids import random_id


class FileExporter(SpanExporter):
    def __init__(self, path):
        self.path = path

    def export(self, spans):
        with open(self.path, "a") as file:
            for span in spans:
                record = {
                    "name": span.name,
                    "trace_id": span.context.trace_id,
                    "attributes": dict(span.attributes),
                }
                file.write(json.dumps(record) + "\\n")
        return SpanExportResult.SUCCESS


class Context:
    pass


def busy_loop(seconds):
    # CPU seconds: on a loaded machine the thread may get less than the wall clock.
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def make_app(app_config):
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(app_config["spans"])))
    baseplate = Baseplate()
    baseplate.configure_metrics(metrics_client_from_config(app_config))

    def app(environ, start_response):
        name = environ["PATH_INFO"].strip("/")
        seconds = float(environ["QUERY_STRING"] or 0.05)
        trace_info = TraceInfo.from_upstream(random_id(), None, random_id(), True, None)
        with baseplate.make_server_span(Context(), name, trace_info) as span:
            if name == "busy":
                busy_loop(seconds)
            elif name == "sleep":
                gevent.sleep(seconds)
            elif name == "yields":
                for _ in range(int(seconds)):
                    gevent.sleep(0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(span.trace_id).encode()]

    app.baseplate = baseplate  # where the runtime monitor finds the metrics client
    return app
"""

INI = """
[server:main]
factory = baseplate.server.wsgi
{monitoring}

[app:main]
factory = costapp:make_app
spans = {spans}
metrics.namespace = costapp
metrics.endpoint = {statsd}
"""


#: What turns the per-request cost counting on (it is off by default).
REQUEST_COST = "monitoring.request_cost = true"


def start_server(servers, tmp_path, statsd, monitoring=""):
    spans = tmp_path / "spans.jsonl"
    ini = INI.format(monitoring=monitoring, spans=spans, statsd=statsd.endpoint)
    app_dir = write_files(tmp_path, {"costapp.py": APP, "app.ini": ini})
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    return server, spans


def span_of(spans_file, trace_id):
    """The exported server span of the request with ``trace_id``, once it is written."""

    def find():
        if not spans_file.exists():
            return None
        for line in spans_file.read_text().splitlines():
            record = json.loads(line)
            if record["trace_id"] & (2**64 - 1) == trace_id:
                return record
        return None

    return wait_until(find, timeout=10)


def timers(lines, name):
    pattern = re.compile(rb"^costapp\." + re.escape(name.encode()) + rb":([0-9.e+-]+)\|ms$")
    return [float(match[1]) for line in lines if (match := pattern.match(line))]


def test_a_busy_request_is_named_by_the_blocked_hub_report_and_carries_its_cost(
    servers, tmp_path, statsd
):
    server, spans = start_server(
        servers, tmp_path, statsd, monitoring="monitoring.blocked_hub = 10 milliseconds"
    )
    address = server.address()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        waiting = pool.submit(http_get, address, "/sleep?0.5")
        time.sleep(0.1)  # the sleeping request is in flight
        status, busy_trace = http_get(address, "/busy?0.05")
        assert status == 200
        assert waiting.result(timeout=10)[0] == 200

    busy = span_of(spans, int(busy_trace))
    assert busy["attributes"]["runtime.cpu_time_ms"] >= 40
    assert busy["attributes"]["runtime.longest_run_ms"] >= 40
    assert busy["attributes"]["runtime.yields"] == 0

    server.wait_for(
        rf"WARNING baseplate\.server\.runtime_monitor .*event loop was blocked .*"
        rf"serving trace id {busy_trace}\b"
    )
    report = server.output[server.output.index(f"trace id {busy_trace}") :]
    assert "unknown configuration key" not in server.output
    assert re.search(r"costapp\.py.*in busy_loop", report)
    assert server.stop() == 0


def test_a_request_that_sleeps_costs_almost_no_cpu_time(servers, tmp_path, statsd):
    server, spans = start_server(servers, tmp_path, statsd, monitoring=REQUEST_COST)
    status, trace_id = http_get(server.address(), "/sleep?0.05")
    assert status == 200

    attributes = span_of(spans, int(trace_id))["attributes"]
    assert attributes["runtime.cpu_time_ms"] < 10
    assert attributes["runtime.longest_run_ms"] < 10
    assert attributes["runtime.yields"] >= 1
    lines = [line for datagram in statsd.received() for line in datagram.split(b"\n")]
    (cpu_time,) = timers(lines, "server.sleep.cpu_time")
    assert cpu_time == pytest.approx(attributes["runtime.cpu_time_ms"], abs=0.01)
    (wall_time,) = timers(lines, "server.sleep")  # the request's own timer, beside it
    assert wall_time >= 50
    assert server.stop() == 0


def test_each_yield_to_the_hub_is_counted(servers, tmp_path, statsd):
    server, spans = start_server(servers, tmp_path, statsd, monitoring=REQUEST_COST)
    status, trace_id = http_get(server.address(), "/yields?25")
    assert status == 200
    assert span_of(spans, int(trace_id))["attributes"]["runtime.yields"] == 25
    assert server.stop() == 0


# -- in this process: what each reporter sends, and where the client comes from


class PyramidLikeApp:
    def __init__(self, baseplate):
        self.baseplate = baseplate


@pytest.fixture
def app(statsd):
    baseplate = Baseplate()
    client = metrics_client_from_config(
        {"metrics.namespace": "svc", "metrics.endpoint": statsd.endpoint}
    )
    baseplate.configure_metrics(client)
    return PyramidLikeApp(baseplate)


@pytest.fixture
def started():
    monitors = []

    def start(server_config, app, pool):
        monitor = runtime_monitor.start(server_config, app, pool)
        monitors.append(monitor)
        return monitor

    yield start
    for monitor in monitors:
        monitor.stop()
    assert ServerSpan.start is Span.start


def report_lines(monitor, statsd):
    monitor.report(monitor.client, b".runtime.host.PID1")
    lines = [line for datagram in statsd.received() for line in datagram.split(b"\n")]
    return [line.replace(b"svc.runtime.host.PID1.", b"") for line in lines]


def test_the_defaults_report_concurrency_and_gc_stats(started, app, statsd):
    pool = gevent.pool.Pool()
    pool.spawn(gevent.sleep, 1)
    pool.spawn(gevent.sleep, 1)
    monitor = started({}, app, pool)

    lines = report_lines(monitor, statsd)
    assert b"active_requests:2|g" in lines
    generations = {line.split(b".")[1] for line in lines if line.startswith(b"gc.")}
    assert generations == {b"gen0", b"gen1", b"gen2"}
    assert any(line.startswith(b"gc.gen0.collections:") for line in lines)
    assert not any(line.startswith(b"gc.elapsed") for line in lines)
    pool.kill()


def test_gc_timing_sends_one_timer_per_collection(started, app, statsd):
    monitor = started({"monitoring.gc.timing": "true", "monitoring.gc.stats": "false"}, app, None)
    gc.collect()
    gc.collect()
    lines = report_lines(monitor, statsd)
    elapsed = [line for line in lines if line.startswith(b"gc.elapsed:")]
    assert len(elapsed) >= 2
    assert all(line.endswith(b"|ms") for line in elapsed)
    assert not any(line.startswith(b"active_requests") for line in lines)
    assert report_lines(monitor, statsd) == []  # each duration is sent once


def test_nothing_is_reported_without_a_metrics_client(started):
    monitor = started({"monitoring.request_cost": "true"}, object(), gevent.pool.Pool())
    assert monitor.reporters == []
    assert ServerSpan.start is not Span.start  # requests are still counted


def test_requests_are_not_counted_by_default(started):
    started({}, object(), gevent.pool.Pool())
    assert ServerSpan.start is Span.start


def test_a_thrift_processors_baseplate_is_found(app):
    class Handler:
        baseplate = app.baseplate

    class Dispatcher:
        event_handler = Handler()

    class Processor:
        _context_dispatcher = Dispatcher()

    client = runtime_monitor._metrics_client_of(Processor())
    assert client is runtime_monitor._metrics_client_of(app)
    assert client is not None


def test_invalid_keys_are_configuration_errors(app):
    with pytest.raises(config.ConfigurationError, match=r"monitoring\.blocked_hub"):
        runtime_monitor.start({"monitoring.blocked_hub": "soon"}, app, None)
    assert ServerSpan.start is Span.start


@pytest.mark.parametrize("monitoring", ["", "monitoring.request_cost = false"])
def test_request_cost_is_off_unless_asked_for(servers, tmp_path, statsd, monitoring):
    server, spans = start_server(servers, tmp_path, statsd, monitoring=monitoring)
    status, trace_id = http_get(server.address(), "/sleep?0.01")
    assert status == 200
    attributes = span_of(spans, int(trace_id))["attributes"]
    assert not any(key.startswith("runtime.") for key in attributes)
    lines = [line for datagram in statsd.received() for line in datagram.split(b"\n")]
    assert timers(lines, "server.sleep")  # the request itself is still timed
    assert timers(lines, "server.sleep.cpu_time") == []
    assert "unknown configuration key" not in server.output
    assert server.stop() == 0
