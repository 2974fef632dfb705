"""Throughput of a Pyramid app instrumented by Baseplate against the bare app.

Two servers run, each in its own subprocess, on gevent's ``pywsgi.WSGIServer``
(the server ``baseplate-serve`` uses) on 127.0.0.1, with the process patched
by gevent as ``baseplate-serve`` does:

* bare: a Pyramid app with one route, ``GET /hello`` -> ``Hello, world!``;
* instrumented: the same app with :class:`~baseplate.integration.pyramid.BaseplateConfigurator`
  and full instrumentation: the metrics observer (one statsd datagram per
  request to a UDP socket on 127.0.0.1 that is never read), the logging
  observer, and tracing with ``tracing.exporter = none`` (every span is still
  created and recorded, none is exported).

`wrk <https://github.com/wg/wrk>`_ (Debian package ``wrk``) drives each in
turn, in alternating rounds of fixed duration after a warm-up, and reports
requests per second and the 50th and 99th latency percentiles; the figures are
the medians over the rounds. The project's target is at least 85% of the bare
throughput.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._throughput import KINDS, Result, report

ROOT = Path(__file__).resolve().parent.parent
PATH = "/hello"


# -- the servers (in subprocesses) ---------------------------------------------------


def make_app(instrumented: bool) -> Any:
    """The hello-world Pyramid app, bare or with full Baseplate instrumentation."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # WebOb imports cgi
        from pyramid.config import Configurator
        from pyramid.response import Response

    def hello(request: Any) -> Any:
        return Response("Hello, world!", content_type="text/plain")

    config = Configurator()
    if instrumented:
        from baseplate import metrics_client_from_config, tracing_client_from_config
        from baseplate.core import Baseplate
        from baseplate.integration.pyramid import BaseplateConfigurator

        # A statsd endpoint that nobody reads: datagrams are sent, then dropped.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        app_config = {
            "metrics.namespace": "bench",
            "metrics.endpoint": f"127.0.0.1:{sink.getsockname()[1]}",
            "tracing.service_name": "bench",
            "tracing.exporter": "none",
        }
        baseplate = Baseplate()
        baseplate.configure_logging()
        baseplate.configure_metrics(metrics_client_from_config(app_config))
        baseplate.configure_tracing(tracing_client_from_config(app_config))
        config.include(BaseplateConfigurator(baseplate).includeme)
        config.registry["bench.statsd_sink"] = sink  # keep it open
    config.add_route("hello", PATH)
    config.add_view(hello, route_name="hello")
    return config.make_wsgi_app()


def serve(kind: str) -> None:
    """Serve the app of this kind on an ephemeral port; print the port, then serve."""
    from gevent import monkey

    monkey.patch_all()
    from bridge.native_locks import use_native_span_locks

    use_native_span_locks()
    from gevent import pywsgi

    class NoDelayHandler(pywsgi.WSGIHandler):
        """pywsgi sends headers and body in two writes: without TCP_NODELAY a
        keep-alive client waits out its delayed ACK (40 ms) on every request."""

        def handle(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

    sys.path.insert(0, str(ROOT))
    app = make_app(kind == "instrumented")
    server = pywsgi.WSGIServer(
        ("127.0.0.1", 0), app, log=None, error_log=None, handler_class=NoDelayHandler
    )
    server.start()
    print(server.server_port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(timeout=1))
    server.serve_forever()


class Server:
    """A server subprocess of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.wsgi", "--serve", kind],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the {kind} server did not start")
        self.url = f"http://127.0.0.1:{int(line)}{PATH}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- wrk ------------------------------------------------------------------------------


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency_ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> Result:
    """The figures of ``wrk --latency`` output."""
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    errors = sum(
        int(count)
        for count in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
        + re.findall(r"Non-2xx or 3xx responses: (\d+)", output)
    )
    return Result(
        float(rate.group(1)), _latency_ms(p50.group(1)), _latency_ms(p99.group(1)), errors
    )


def run_wrk(wrk: str, url: str, seconds: int, connections: int) -> Result:
    output = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    return parse_wrk(output)


# -- the benchmark --------------------------------------------------------------------------


def main(quick: bool = False) -> None:
    seconds, rounds, warm_up = (2, 2, 1) if quick else (5, 3, 2)
    connections = 16
    print(
        f"WSGI: hello-world Pyramid on gevent pywsgi, wrk -t1 -c{connections}, "
        f"{rounds} alternating rounds of {seconds} s (medians)"
    )
    wrk = shutil.which("wrk")
    if wrk is None:
        print("  wrk is not installed: apt-get install -y -q wrk   (skipped)")
        return
    servers = {kind: Server(kind) for kind in KINDS}
    try:
        for server in servers.values():
            run_wrk(wrk, server.url, warm_up, connections)
        results: dict[str, list[Result]] = {kind: [] for kind in KINDS}
        for round_number in range(rounds):
            order = KINDS if round_number % 2 == 0 else KINDS[::-1]
            for kind in order:
                results[kind].append(run_wrk(wrk, servers[kind].url, seconds, connections))
    finally:
        for server in servers.values():
            server.stop()

    report(results)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help="shorter runs")
    arguments.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    options = arguments.parse_args()
    if options.serve:
        serve(options.serve)
    else:
        main(quick=options.quick)
