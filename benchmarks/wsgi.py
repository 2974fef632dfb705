"""A Pyramid app served by ``baseplate-serve`` with full instrumentation, against the bare app.

Two servers run, each in its own subprocess, on 127.0.0.1:

* bare: a Pyramid app with one route, ``GET /hello`` -> ``Hello, world!``, on
  a plain ``gevent.pywsgi.WSGIServer`` started by this module, the process
  patched by gevent first: no Baseplate at all, only TCP_NODELAY on each
  connection (pywsgi writes headers and body in two sends, and without it a
  keep-alive client waits out its delayed ACK on every request);
* instrumented: the same app as a service runs it, under the project's own
  ``baseplate-serve`` (``[server:main] factory = baseplate.server.wsgi``,
  ``max_concurrency = 100``) with :class:`~baseplate.integration.pyramid.BaseplateConfigurator`
  and the observers of a real service: logging, metrics (one statsd datagram
  per request to a UDP socket on 127.0.0.1 that is never read) and tracing
  sampled at 100% (``tracing.sample_rate = 100%``; with no destination
  configured, every span is created and sampled but not recorded, since
  nothing would read the record: see :mod:`bridge.recording`).

`wrk <https://github.com/wg/wrk>`_ (Debian package ``wrk``; ``-t1 -c16``)
drives each in turn, in alternating rounds of fixed duration after a warm-up.
Reported, as medians over the rounds: requests per second, the 50th and 99th
latency percentiles, and the server process's CPU time per request (utime +
stime from ``/proc/<pid>/stat`` before and after each round, over the requests
answered); then, within each round, the instrumented throughput as a share of
the bare one and the CPU microseconds the instrumentation added per request.
That last figure is the one the project holds against the original Baseplate:
its target is to add no more CPU per request than Baseplate 0.30.9 does. The
comparison itself, with 0.30.9 and 2.7.1 each under its own
``baseplate-serve``, is ``../shared/bench_peers/servers/run.sh``; this
benchmark does not run it.

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._throughput import (
    KINDS,
    Result,
    ServerProcess,
    baseplate_serve,
    free_port,
    report,
    run_rounds,
    stopped_at_the_end,
)

ROOT = Path(__file__).resolve().parent.parent
PATH = "/hello"
BODY = b"Hello, world!"
CONNECTIONS = 16

INI = """\
[server:main]
factory = baseplate.server.wsgi
max_concurrency = 100
stop_timeout = 1

[app:main]
factory = benchmarks.wsgi:make_instrumented_app
metrics.namespace = bench
metrics.endpoint = 127.0.0.1:{sink_port}
tracing.service_name = bench
tracing.sample_rate = 100%
"""


# -- the apps (in the server subprocesses) ----------------------------------------------


def make_app(baseplate: Any = None) -> Any:
    """The hello-world Pyramid app, bare or, given a Baseplate, instrumented by it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # WebOb imports cgi
        from pyramid.config import Configurator
        from pyramid.response import Response

    def hello(request: Any) -> Any:
        return Response(BODY.decode(), content_type="text/plain")

    config = Configurator()
    if baseplate is not None:
        from baseplate.integration.pyramid import BaseplateConfigurator

        config.include(BaseplateConfigurator(baseplate).includeme)
    config.add_route("hello", PATH)
    config.add_view(hello, route_name="hello")
    return config.make_wsgi_app()


def make_instrumented_app(app_config: dict[str, str]) -> Any:
    """The ``[app:main]`` factory ``baseplate-serve`` calls: the app as a service builds it.

    Only the documented 0.28-0.30 API, the way an application written for
    Baseplate 0.30.9 sets itself up, so that the cost measured is the cost
    such an application pays.
    """
    from baseplate import metrics_client_from_config, tracing_client_from_config
    from baseplate.core import Baseplate

    baseplate = Baseplate()
    baseplate.configure_logging()
    baseplate.configure_metrics(metrics_client_from_config(app_config))
    baseplate.configure_tracing(tracing_client_from_config(app_config, log_if_unconfigured=False))
    return make_app(baseplate)


def serve_bare(port: int) -> None:
    """Serve the bare app on 127.0.0.1:``port`` with gevent's pywsgi until SIGTERM."""
    from gevent import monkey

    monkey.patch_all()
    import signal

    from gevent import pywsgi

    class NoDelayHandler(pywsgi.WSGIHandler):  # type: ignore[misc]
        """pywsgi sends headers and body in two writes: without TCP_NODELAY a
        keep-alive client waits out its delayed ACK (40 ms) on every request
        (``baseplate-serve`` sets it itself)."""

        def handle(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

    server = pywsgi.WSGIServer(
        ("127.0.0.1", port), make_app(), log=None, error_log=None, handler_class=NoDelayHandler
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop(timeout=1))
    server.serve_forever()


def check_reply(server: ServerProcess) -> None:
    """Fail unless the server answers ``GET /hello`` as expected: wrk would count anything."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or body != BODY:
        raise RuntimeError(
            f"the {server.name} server answered {response.status} {body[:100]!r}:\n{server.log()}"
        )


# -- wrk ------------------------------------------------------------------------------


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> Result:
    """The figures of ``wrk --latency`` output."""
    total = re.search(r"^\s*(\d+) requests in (\S+?),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if total is None or rate is None or p50 is None or p99 is None:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    errors = sum(
        int(count)
        for count in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
        + re.findall(r"Non-2xx or 3xx responses: (\d+)", output)
    )
    return Result(
        requests_per_second=float(rate.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        errors=errors,
        requests=int(total.group(1)),
        seconds=_ms(total.group(2)) / 1000,
    )


def run_wrk(wrk: str, server: ServerProcess, seconds: float) -> Result:
    """``wrk -t1 -c16`` against ``server`` for ``seconds`` (and 30 s more at most)."""
    url = f"http://127.0.0.1:{server.port}{PATH}"
    output = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    return parse_wrk(output)


# -- the benchmark --------------------------------------------------------------------------


def main(quick: bool = False) -> None:
    seconds, rounds, warm_up = (2, 2, 1) if quick else (5, 3, 2)
    print(
        f"WSGI: hello-world Pyramid, bare on gevent pywsgi against baseplate-serve with "
        f"tracing at 100%, wrk -t1 -c{CONNECTIONS}, {rounds} alternating rounds of "
        f"{seconds} s (medians; {os.cpu_count()} CPUs)"
    )
    wrk = shutil.which("wrk")
    if wrk is None:
        print("  wrk is not installed: apt-get install -y -q wrk   (skipped)")
        return
    # A statsd endpoint that nobody reads: datagrams are sent, then dropped.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with sink, tempfile.TemporaryDirectory(prefix="baseplate-bench-wsgi-") as scratch:
        directory = Path(scratch)
        ini = directory / "bench.ini"
        ini.write_text(INI.format(sink_port=sink.getsockname()[1]))
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        with stopped_at_the_end() as servers:
            port = free_port()
            servers["bare"] = ServerProcess(
                "bare",
                [sys.executable, "-m", "benchmarks.wsgi", "--serve-bare", str(port)],
                port,
                ROOT,
                directory / "bare.log",
            )
            servers["instrumented"] = baseplate_serve(
                "instrumented", ini, "main", directory, env={"PYTHONPATH": python_path}
            )
            for server in servers.values():
                check_reply(server)
            results = run_rounds(
                {kind: servers[kind] for kind in KINDS},
                lambda server, duration: run_wrk(wrk, server, duration),
                seconds,
                rounds,
                warm_up,
            )

    report(results)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help="shorter runs")
    arguments.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = arguments.parse_args()
    if options.serve_bare:
        serve_bare(options.serve_bare)
    else:
        main(quick=options.quick)
