"""Throughput of a Thrift service under ``baseplate-serve``, instrumented against bare.

One IDL (``service Bench extends baseplate.BaseplateService { string
echo(1: string text) }``) is generated with :mod:`baseplate.thrift.codegen`
into a temporary directory, and two applications of it run, each in its own
``baseplate-serve`` subprocess with the same gevent Thrift server
(``[server:main] factory = baseplate.server.thrift``, ``max_concurrency =
100``), so that only the instrumentation differs:

* bare: the plain generated ``Bench.Processor`` around a handler whose
  ``echo`` returns its argument;
* instrumented: ``Bench.ContextProcessor`` around the same handler (taking
  the context first) with ``BaseplateProcessorEventHandler`` and full
  instrumentation: the metrics observer (one statsd datagram per call to a
  UDP socket on 127.0.0.1 that is never read), the logging observer,
  tracing with ``tracing.exporter = none`` (every span is created, none is
  exported) and an edge context factory.

The load generator is a separate process: one thread, an ``epoll`` loop over
``CONNECTIONS`` THeader connections, one call outstanding on each. The
requests are serialised up front by the generated client (so the load
generator spends almost nothing per call): 1,000 different ``echo("hello")``
frames, each with fresh ``Trace``/``Parent``/``Span`` ids, ``Sampled: 1``
(every call continues a sampled trace, so the instrumented server records a
span for each: 100% sampling, as ``../shared/bench_peers/servers/thrift_load.py``
sends) and an ``Edge-Request`` header, as a Baseplate upstream sends them.
Replies are checked by length (the first on each connection is decoded).

Each server is warmed up, then the servers are driven in alternating rounds
of fixed duration. Reported, as medians over the rounds: calls per second,
the 50th and 99th latency percentiles, and the server process's CPU time per
call (utime + stime from ``/proc/<pid>/stat`` before and after each round,
over the calls answered); then, within each round, the instrumented
throughput as a share of the bare one and the CPU microseconds the
instrumentation added per call. That last figure is the one the project holds
against the original Baseplate: its target is to add no more CPU per request
than Baseplate 0.30.9 does. The comparison itself, with 0.30.9 and 2.7.1 each
under its own ``baseplate-serve``, is ``../shared/bench_peers/servers/run.sh``;
this benchmark does not run it.

With ``--profile``, the processors are also run in this process over
in-memory transports, to give the per-call cost of each without sockets and
where the instrumented one spends its time (cProfile).

Run directly with ``--quick`` for a smaller, faster run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks._throughput import (
    KINDS,
    Result,
    ServerProcess,
    baseplate_serve,
    report,
    run_rounds,
    stopped_at_the_end,
)

ROOT = Path(__file__).resolve().parent.parent

CONNECTIONS = 16
FRAMES = 1_000
PACKAGE = "bench_service"

IDL = f"""
include "baseplate.thrift"

namespace py {PACKAGE}

service Bench extends baseplate.BaseplateService {{
    string echo(1: string text),
}}
"""

APP = f"""
import logging

from baseplate import metrics_client_from_config, tracing_client_from_config
from baseplate.core import Baseplate, EdgeRequestContextFactory
from baseplate.integration.thrift import BaseplateProcessorEventHandler
from baseplate.secrets import secrets_store_from_config
from {PACKAGE} import Bench

logger = logging.getLogger("bench_app")


class Handler(Bench.ContextIface):
    def is_healthy(self, context):
        return True

    def echo(self, context, text):
        return text


class BareHandler(Bench.Iface):
    def is_healthy(self):
        return True

    def echo(self, text):
        return text


def make_processor(app_config):
    baseplate = Baseplate()
    baseplate.configure_logging()
    baseplate.configure_metrics(metrics_client_from_config(app_config))
    baseplate.configure_tracing(tracing_client_from_config(app_config))
    edge_context_factory = EdgeRequestContextFactory(secrets_store_from_config(app_config))
    processor = Bench.ContextProcessor(Handler())
    processor.setEventHandler(
        BaseplateProcessorEventHandler(logger, baseplate, edge_context_factory)
    )
    return processor


def make_bare_processor(app_config):
    return Bench.Processor(BareHandler())
"""

INI = """
[server:main]
factory = baseplate.server.thrift
max_concurrency = 100
stop_timeout = 1

[app:instrumented]
factory = bench_app:make_processor
metrics.namespace = bench
metrics.endpoint = 127.0.0.1:{sink_port}
tracing.service_name = bench
tracing.exporter = none
secrets.path = {secrets}

[app:bare]
factory = bench_app:make_bare_processor
"""


# -- the service directory ---------------------------------------------------------


def prepare(directory: Path, sink_port: int) -> None:
    """Generate the IDL and write the app, a secrets file and the INI file."""
    from baseplate.thrift.codegen import generate

    idl = directory / "bench.thrift"
    idl.write_text(IDL)
    generate(idl, directory)
    (directory / "bench_app.py").write_text(APP)
    (directory / "secrets.json").write_text(json.dumps({"secrets": {}}))
    (directory / "bench.ini").write_text(
        textwrap.dedent(INI).format(sink_port=sink_port, secrets=directory / "secrets.json")
    )


def _import_service(directory: Path) -> Any:
    import importlib

    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return importlib.import_module(f"{PACKAGE}.Bench")


# -- the requests --------------------------------------------------------------------


def request_frames(directory: Path, count: int) -> list[bytes]:
    """``count`` serialised ``echo("hello")`` calls, each with its own sampled trace."""
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.transport.THeaderTransport import THeaderClientType
    from thrift.transport.TTransport import TMemoryBuffer

    from baseplate.core import EdgeRequestContextFactory
    from baseplate.secrets import SecretsStore

    bench = _import_service(directory)
    edge = EdgeRequestContextFactory(SecretsStore(str(directory / "secrets.json")))
    edge_header = edge.new(loid_id="t2_bench", loid_created_ms=1, session_id="bench").header
    rng = random.Random(7)
    frames = []
    for _ in range(count):
        buffer = TMemoryBuffer()
        protocol = THeaderProtocol(buffer, (THeaderClientType.HEADERS,))
        trace_id, parent_id, span_id = (rng.randrange(1, 2**63) for _ in range(3))
        headers = {
            b"Trace": str(trace_id).encode(),
            b"Parent": str(parent_id).encode(),
            b"Span": str(span_id).encode(),
            b"Sampled": b"1",
            b"Edge-Request": edge_header,
        }
        for name, value in headers.items():
            protocol.trans.set_header(name, value)
        bench.Client(protocol).send_echo("hello")
        frames.append(buffer.getvalue())
    return frames


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!i", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def _check_reply(bench: Any, frame: bytes) -> None:
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.transport.THeaderTransport import THeaderClientType
    from thrift.transport.TTransport import TMemoryBuffer

    protocol = THeaderProtocol(TMemoryBuffer(frame), (THeaderClientType.HEADERS,))
    answer = bench.Client(protocol).recv_echo()
    if answer != "hello":
        raise AssertionError(f"echo answered {answer!r}")


def generate_load(port: int, seconds: float, connections: int, directory: Path) -> Result:
    """Keep one call outstanding on each connection for ``seconds``; count and time them."""
    bench = _import_service(directory)
    frames = request_frames(directory, FRAMES)
    selector = selectors.DefaultSelector()
    socks = []
    reply_size = 0
    for index in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(frames[index])
        reply = _read_frame(sock)
        _check_reply(bench, reply)
        reply_size = len(reply)
        socks.append(sock)

    latencies: list[float] = []
    errors = 0
    pending: dict[int, bytes] = {}
    sent_at: dict[int, float] = {}
    next_frame = connections
    start = time.perf_counter()
    end = start + seconds
    for sock in socks:
        fd = sock.fileno()
        pending[fd] = b""
        selector.register(sock, selectors.EVENT_READ)
        sent_at[fd] = time.perf_counter()
        sock.sendall(frames[next_frame % FRAMES])
        next_frame += 1
    open_calls = len(socks)
    while open_calls:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj  # type: ignore[assignment]
            fd = key.fd
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed a connection")
            data = pending[fd] + chunk
            if len(data) < 4 or len(data) < 4 + struct.unpack("!i", data[:4])[0]:
                pending[fd] = data
                continue
            now = time.perf_counter()
            latencies.append(now - sent_at[fd])
            if len(data) != reply_size:
                errors += 1
            pending[fd] = b""
            if now < end:
                sent_at[fd] = now
                sock.sendall(frames[next_frame % FRAMES])
                next_frame += 1
            else:
                selector.unregister(sock)
                open_calls -= 1
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    latencies.sort()
    return Result(
        requests_per_second=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors=errors,
        # the server also answered the first call on each connection, before the clock
        requests=len(latencies) + connections,
        seconds=elapsed,
    )


def run_load(server: ServerProcess, seconds: float, directory: Path) -> Result:
    """:func:`generate_load` against ``server`` in a subprocess of its own."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.thrift_server",
            "--load",
            str(server.port),
            "--seconds",
            str(seconds),
            "--service-dir",
            str(directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return Result(**json.loads(output.strip().splitlines()[-1]))


# -- in-process profile ------------------------------------------------------------------


def _processor_calls(processor: Any, frame: bytes, count: int) -> float:
    """Seconds per call of ``processor`` on ``frame``, over in-memory transports."""
    from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
    from thrift.transport.TTransport import TMemoryBuffer

    from baseplate.server.thrift import ALLOWED_CLIENT_TYPES

    factory = THeaderProtocolFactory(allowed_client_types=ALLOWED_CLIENT_TYPES)
    started = time.perf_counter()
    for _ in range(count):
        protocol = factory.getProtocol(TMemoryBuffer(frame))
        processor.process(protocol, protocol)
    return (time.perf_counter() - started) / count


def _layers(bench_app: Any, app_config: dict[str, str]) -> dict[str, Any]:
    """The processor with the instrumentation added one piece at a time."""
    import logging

    from baseplate import metrics_client_from_config, tracing_client_from_config
    from baseplate.core import Baseplate
    from baseplate.integration.thrift import BaseplateProcessorEventHandler

    bench = sys.modules[f"{PACKAGE}.Bench"]

    def instrumented(*pieces: str) -> Any:
        baseplate = Baseplate()
        if "metrics" in pieces:
            baseplate.configure_metrics(metrics_client_from_config(app_config))
        if "logging" in pieces:
            baseplate.configure_logging()
        if "tracing" in pieces:
            baseplate.configure_tracing(tracing_client_from_config(app_config))
        processor = bench.ContextProcessor(bench_app.Handler())
        processor.setEventHandler(
            BaseplateProcessorEventHandler(logging.getLogger("bench_app"), baseplate)
        )
        return processor

    return {
        "bare Processor": bench_app.make_bare_processor({}),
        "ContextProcessor, no event handler": bench.ContextProcessor(bench_app.Handler()),
        "+ event handler (server span), no observers": instrumented(),
        "+ metrics observer": instrumented("metrics"),
        "+ logging observer": instrumented("metrics", "logging"),
        "+ tracing observer (exporter none)": instrumented("metrics", "logging", "tracing"),
        "+ edge context factory (the benchmark's app)": bench_app.make_processor(app_config),
    }


def profile(directory: Path, sink_port: int, calls: int) -> None:
    """Per-call cost of the processors in this process, layer by layer, and a profile."""
    import cProfile
    import io
    import pstats

    _import_service(directory)
    import bench_app  # type: ignore[import-not-found]

    frame = request_frames(directory, 1)[0]
    app_config = {
        "metrics.namespace": "bench",
        "metrics.endpoint": f"127.0.0.1:{sink_port}",
        "tracing.service_name": "bench",
        "tracing.exporter": "none",
        "secrets.path": str(directory / "secrets.json"),
    }
    processors = _layers(bench_app, app_config)
    costs: dict[str, list[float]] = {name: [] for name in processors}
    for processor in processors.values():
        _processor_calls(processor, frame, calls // 5)  # warm up
    for _ in range(5):
        for name, processor in processors.items():
            costs[name].append(_processor_calls(processor, frame, calls))
    print("  where the time goes: one echo() call in this process, no sockets (median us/call)")
    previous = None
    for name in processors:
        cost = statistics.median(costs[name]) * 1e6
        step = "" if previous is None else f"  ({cost - previous:+5.1f})"
        print(f"    {name:<46} {cost:6.1f}{step}")
        previous = cost

    profiler = cProfile.Profile()
    instrumented = processors["+ edge context factory (the benchmark's app)"]
    profiler.enable()
    _processor_calls(instrumented, frame, calls)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"baseplate/(core|integration|diagnostics|metrics)|bridge/", 14)
    print("  instrumented processor under cProfile, Baseplate's functions by cumulative time:")
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    for line in lines[start:]:
        if line.strip():
            print("    " + line.replace(str(ROOT) + "/", ""))


# -- the benchmark ---------------------------------------------------------------------------


def main(quick: bool = False, with_profile: bool = False) -> None:
    seconds, rounds, warm_up = (2, 2, 1) if quick else (5, 3, 2)
    print(
        f"Thrift: echo() under baseplate-serve (gevent Thrift server), every call sampled, "
        f"{CONNECTIONS} connections from one load-generator process, {rounds} alternating "
        f"rounds of {seconds} s (medians; {os.cpu_count()} CPUs)"
    )
    # A statsd endpoint that nobody reads: datagrams are sent, then dropped.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with sink, tempfile.TemporaryDirectory(prefix="baseplate-bench-thrift-") as scratch:
        directory = Path(scratch)
        sink_port = sink.getsockname()[1]
        prepare(directory, sink_port)
        with stopped_at_the_end() as servers:
            for kind in KINDS:
                servers[kind] = baseplate_serve(kind, directory / "bench.ini", kind, directory)
            results = run_rounds(
                servers,
                lambda server, duration: run_load(server, duration, directory),
                seconds,
                rounds,
                warm_up,
            )

        report(results)
        if with_profile:
            profile(directory, sink_port, 2_000 if quick else 10_000)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help="shorter runs")
    arguments.add_argument(
        "--profile", action="store_true", help="also profile the processors in this process"
    )
    arguments.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    arguments.add_argument("--service-dir", type=Path, help=argparse.SUPPRESS)
    options = arguments.parse_args()
    if options.load:
        result = generate_load(options.load, options.seconds, CONNECTIONS, options.service_dir)
        print(json.dumps(dataclasses.asdict(result)))
    else:
        main(quick=options.quick, with_profile=options.profile)
