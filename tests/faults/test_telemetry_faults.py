"""Telemetry destinations that never answer cannot hold the process's exit.

The trace collector and Sentry here are a listening socket that nothing
accepts from: the kernel completes every connection, and no answer ever
comes. ``baseplate-serve`` must still exit within ``stop_timeout`` (plus a
moment), reporting what it dropped. It used to wait on OpenTelemetry's exit
flush for 10 to 19 seconds.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.server import child_environ, free_port, http_get, write

STOP_TIMEOUT = 2.0
#: What may pass after stop_timeout: the interpreter's exit, the logging.
MARGIN = 1.5

APP = """
from pyramid.config import Configurator

from baseplate import (
    error_reporter_from_config,
    metrics_client_from_config,
    tracing_client_from_config,
)
from baseplate.core import Baseplate
from baseplate.integration.pyramid import BaseplateConfigurator


def make_app(app_config):
    baseplate = Baseplate()
    baseplate.configure_tracing(tracing_client_from_config(app_config))
    baseplate.configure_metrics(metrics_client_from_config(app_config))
    if app_config.get("sentry.dsn"):
        baseplate.configure_error_reporting(error_reporter_from_config(app_config, __name__))

    def hello(request):
        return {"hello": "world"}

    def fail(request):
        raise RuntimeError("on purpose")

    configurator = Configurator()
    configurator.include(BaseplateConfigurator(baseplate).includeme)
    configurator.add_route("hello", "/hello")
    configurator.add_view(hello, route_name="hello", renderer="json")
    configurator.add_route("fail", "/fail")
    configurator.add_view(fail, route_name="fail", renderer="json")
    return configurator.make_wsgi_app()
"""

INI = """
[server:main]
factory = baseplate.server.wsgi
stop_timeout = {stop_timeout}

[app:main]
factory = telemetryapp:make_app
tracing.service_name = telemetry-faults
tracing.sample_rate = 100%
tracing.span_batch_interval = 50 milliseconds
metrics.namespace = telemetry-faults
metrics.endpoint = 127.0.0.1:{closed_port}
{destination}
"""


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def destination(exporter: str, port: int) -> str:
    if exporter == "zipkin":
        return f"tracing.exporter = zipkin\ntracing.zipkin.endpoint = http://127.0.0.1:{port}/api/v2/spans"
    return f"tracing.exporter = otlp\ntracing.otlp.endpoint = http://127.0.0.1:{port}/v1/traces"


def start(servers, tmp_path, settings: str):
    write(tmp_path / "telemetryapp.py", APP)
    ini = INI.format(stop_timeout=STOP_TIMEOUT, closed_port=free_port(), destination=settings)
    write(tmp_path / "app.ini", ini)
    return servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=tmp_path)


def stop_timed(server) -> float:
    """SIGTERM; the seconds until the process was gone. It must have exited cleanly."""
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0, server.output
    return time.monotonic() - started


@pytest.mark.parametrize("exporter", ["otlp", "zipkin"])
def test_exit_within_stop_timeout_when_the_collector_never_answers(
    servers, tmp_path, silent, exporter
):
    server = start(servers, tmp_path, destination(exporter, silent))
    address = server.address()
    for _ in range(3):
        assert http_get(address, "/hello") == (200, '{"hello": "world"}')
    time.sleep(0.3)  # the first batch is out, stuck on the collector

    took = stop_timed(server)

    assert took < STOP_TIMEOUT + MARGIN, server.output
    dropped = [line for line in server.lines if "did not take them" in line]
    assert len(dropped) == 1, server.output
    assert " WARNING bridge.batching " in dropped[0]
    assert f"127.0.0.1:{silent}" in dropped[0]
    assert "Traceback" not in server.output


def test_exit_within_stop_timeout_when_sentry_never_answers(servers, tmp_path, silent):
    settings = destination("otlp", silent) + f"\nsentry.dsn = http://key@127.0.0.1:{silent}/1"
    server = start(servers, tmp_path, settings)
    address = server.address()
    for _ in range(3):
        assert http_get(address, "/fail")[0] == 500

    took = stop_timed(server)

    assert took < STOP_TIMEOUT + MARGIN, server.output
    [sentry] = [line for line in server.lines if "Sentry event(s)" in line]
    assert " WARNING baseplate.diagnostics.sentry " in sentry
    assert "dropped 3 Sentry event(s)" in sentry
    assert "key@" not in sentry
    assert any("span(s)" in line and "did not take them" in line for line in server.lines)


SCRIPT = """
import sys
from types import SimpleNamespace

from baseplate import tracing_client_from_config
from baseplate.core import Baseplate

client = tracing_client_from_config(
    {
        "tracing.service_name": "script",
        "tracing.exporter": "otlp",
        "tracing.otlp.endpoint": sys.argv[1],
        "tracing.sample_rate": "100%",
        "tracing.span_batch_interval": "50 milliseconds",
    }
)
baseplate = Baseplate()
baseplate.configure_tracing(client)
for _ in range(3):
    with baseplate.make_server_span(SimpleNamespace(), "work"):
        pass
print("done", flush=True)
"""


def test_a_script_exits_within_the_exit_timeout_when_the_collector_never_answers(silent):
    """No baseplate-serve: the provider is shut down at interpreter exit, bounded."""
    from bridge.shutdown import EXIT_TIMEOUT

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"http://127.0.0.1:{silent}/v1/traces"],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_environ(),
        check=False,
    )
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert took < EXIT_TIMEOUT + MARGIN + 1.0, done.stderr  # + the interpreter's start
    assert "did not take them" in done.stderr
    assert "Traceback" not in done.stderr
