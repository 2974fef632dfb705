"""Telemetry destinations that never answer cannot hold the process's exit.

The trace collector and Sentry here are a listening socket that nothing
accepts from: the kernel completes every connection, and no answer ever
comes. ``baseplate-serve`` must still exit within ``stop_timeout`` (plus a
moment), reporting what it dropped. It used to wait on OpenTelemetry's exit
flush for 10 to 19 seconds.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.server import child_environ, free_port, http_get, write

STOP_TIMEOUT = 2.0
#: The process must be gone this long after it was told to stop: far more
#: than stop_timeout plus the interpreter's exit, so a loaded machine does not
#: fail the test, and less than the 10 s OpenTelemetry's own exit flush waited.
EXIT_DEADLINE = 8.0

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


class SilentCollector:
    """Accepts connections on 127.0.0.1 and never answers; ``connected`` is set at the first."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self.listener.getsockname()[1])
        self.connected = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener was closed
            while True:
                self.connections.append(self.listener.accept()[0])
                self.connected.set()

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentCollector]:
    collector = SilentCollector()
    yield collector
    collector.close()


def destination(exporter: str, port: int) -> str:
    if exporter == "zipkin":
        return f"tracing.exporter = zipkin\ntracing.zipkin.endpoint = http://127.0.0.1:{port}/api/v2/spans"
    return f"tracing.exporter = otlp\ntracing.otlp.endpoint = http://127.0.0.1:{port}/v1/traces"


def start(servers, tmp_path, settings: str):
    write(tmp_path / "telemetryapp.py", APP)
    ini = INI.format(stop_timeout=STOP_TIMEOUT, closed_port=free_port(), destination=settings)
    write(tmp_path / "app.ini", ini)
    return servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=tmp_path)


def stop_before_the_deadline(server) -> None:
    """SIGTERM; the process must exit cleanly within EXIT_DEADLINE."""
    try:
        status = server.stop(signal.SIGTERM, timeout=EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_DEADLINE:g} s after SIGTERM; output:\n{server.output}")
    assert status == 0, server.output


@pytest.mark.parametrize("exporter", ["otlp", "zipkin"])
def test_exit_within_stop_timeout_when_the_collector_never_answers(
    servers, tmp_path, silent, exporter
):
    server = start(servers, tmp_path, destination(exporter, silent.port))
    address = server.address()
    for _ in range(3):
        assert http_get(address, "/hello") == (200, '{"hello": "world"}')
    assert silent.connected.wait(30), "the first batch is out, stuck on the collector"

    stop_before_the_deadline(server)

    dropped = [line for line in server.lines if "did not take them" in line]
    assert len(dropped) == 1, server.output
    assert " WARNING bridge.batching " in dropped[0]
    assert f"127.0.0.1:{silent.port}" in dropped[0]
    assert "Traceback" not in server.output


def test_exit_within_stop_timeout_when_sentry_never_answers(servers, tmp_path, silent):
    settings = (
        destination("otlp", silent.port) + f"\nsentry.dsn = http://key@127.0.0.1:{silent.port}/1"
    )
    server = start(servers, tmp_path, settings)
    address = server.address()
    for _ in range(3):
        assert http_get(address, "/fail")[0] == 500

    stop_before_the_deadline(server)

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
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, f"http://127.0.0.1:{silent.port}/v1/traces"],
            capture_output=True,
            text=True,
            timeout=EXIT_DEADLINE + 2.0,  # + the interpreter's start and imports
            env=child_environ(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script did not exit in time; stderr:\n{exc.stderr}")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert "did not take them" in done.stderr
    assert "Traceback" not in done.stderr
