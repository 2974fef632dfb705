"""What the server benchmarks share: starting and stopping server processes,
the rounds of load, the servers' CPU time from ``/proc``, and the report.

``benchmarks/wsgi.py`` and ``benchmarks/thrift_server.py`` both measure a bare
server against the same app instrumented under ``baseplate-serve``. Keeping
the process handling, the rounds and the CPU accounting here means that both
measure the same way, so their figures can be read side by side.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

KINDS = ("bare", "instrumented")

#: How long a server may take to accept connections after it is started.
START_TIMEOUT = 30.0
#: How long a server gets after a round before its CPU time is read again: work
#: a request left behind (a span or a metrics batch sent late) is its cost too.
SETTLE_SECONDS = 0.5
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    """One load run against one server, and the CPU time the server spent on it."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: Requests the server answered during the run (those timed and any the load
    #: generator sent before its clock started): what the CPU time is divided by.
    requests: int
    #: How long the load generator's clock ran.
    seconds: float
    #: utime+stime of the server process from the start of the run to
    #: :data:`SETTLE_SECONDS` after its end; filled in by :func:`measure`.
    server_cpu_s: float = 0.0
    #: The same, up to the end of the run only: how busy the server was.
    server_cpu_during_s: float = 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def server_core_share(self) -> float:
        """The share of one core the server used under load; well below 100%, the
        server was not what limited the throughput (the load generator or the
        machine's other jobs were)."""
        return self.server_cpu_during_s / self.seconds if self.seconds else float("nan")


# -- /proc -----------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of process ``pid`` (all its threads), in seconds.

    Read from ``/proc`` rather than measured by the load: on a shared 2-core
    machine the CPU a server spends per request is much steadier than its
    throughput, which also depends on how much of a core it was given.
    """
    with open(f"/proc/{pid}/stat") as stat:
        data = stat.read()
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = data[data.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / _CLOCK_TICKS


# -- server processes -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server in a subprocess listening on 127.0.0.1:``port``, its output in a file.

    The constructor returns once the server accepts connections, and stops it
    if it does not within :data:`START_TIMEOUT`.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        cwd: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {name} server did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text()

    def check_alive(self) -> None:
        """Fail if the server has exited: its figures would be the load generator's errors."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the {self.name} server exited:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (a graceful stop for ``baseplate-serve``), then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def baseplate_serve(
    name: str,
    ini: Path,
    app_name: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """The project's own ``baseplate-serve`` (this venv's) on ``ini``, in ``ini``'s folder.

    The folder is the working directory, so that ``baseplate-serve`` finds
    modules next to the INI file; ``env`` adds to the environment (such as a
    ``PYTHONPATH``).
    """
    port = free_port()
    serve = Path(sys.executable).parent / "baseplate-serve"
    command = [
        str(serve),
        "--app-name",
        app_name,
        "--bind",
        f"127.0.0.1:{port}",
        ini.name,
    ]
    return ServerProcess(name, command, port, ini.parent, log_dir / f"{name}.log", env)


# -- the rounds --------------------------------------------------------------------------


@contextlib.contextmanager
def stopped_at_the_end() -> Iterator[dict[str, ServerProcess]]:
    """A dict for the servers a benchmark starts: each is stopped when the block ends, also
    when it fails, so that no server outlives its benchmark."""
    servers: dict[str, ServerProcess] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def measure(server: ServerProcess, load: Callable[[], Result]) -> Result:
    """Run ``load`` against ``server``; its result with the server's CPU time for it."""
    before = process_cpu_seconds(server.pid)
    result = load()
    during = process_cpu_seconds(server.pid)
    time.sleep(SETTLE_SECONDS)
    server.check_alive()
    after = process_cpu_seconds(server.pid)
    return replace(result, server_cpu_s=after - before, server_cpu_during_s=during - before)


def run_rounds(
    servers: Mapping[str, ServerProcess],
    load: Callable[[ServerProcess, float], Result],
    seconds: float,
    rounds: int,
    warm_up: float,
) -> dict[str, list[Result]]:
    """Warm each server up, then load them in turn, ``rounds`` times.

    The order alternates from round to round, so that a slow moment of the
    machine does not always fall on the same server; round ``i`` of each
    kind is ``results[kind][i]``, which the report compares.
    """
    for server in servers.values():
        load(server, warm_up)
        server.check_alive()
    results: dict[str, list[Result]] = {kind: [] for kind in servers}
    kinds = list(servers)
    for round_number in range(rounds):
        order = kinds if round_number % 2 == 0 else kinds[::-1]
        for kind in order:
            server = servers[kind]
            results[kind].append(measure(server, functools.partial(load, server, seconds)))
    return results


# -- the report -----------------------------------------------------------------------------


def report(results: Mapping[str, Sequence[Result]]) -> None:
    """Print the medians per kind, then instrumented against bare, round by round.

    The ratio and the CPU added are taken within each round (the two servers
    loaded one after the other) and their median printed: what the machine
    was doing at the time then weighs on both sides.
    """
    for kind in KINDS:
        runs = results[kind]
        rate = statistics.median(result.requests_per_second for result in runs)
        p50 = statistics.median(result.p50_ms for result in runs)
        p99 = statistics.median(result.p99_ms for result in runs)
        cpu = statistics.median(result.cpu_us_per_request for result in runs)
        share = statistics.median(result.server_core_share for result in runs)
        errors = sum(result.errors for result in runs)
        print(
            f"  {kind:<13} {rate:8.0f} req/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   "
            f"CPU {cpu:6.1f} µs/request ({share:.0%} of a core)"
            + (f"   ({errors} errors)" if errors else "")
        )
    pairs = list(zip(results["bare"], results["instrumented"], strict=True))
    ratios = [inst.requests_per_second / bare.requests_per_second for bare, inst in pairs]
    added = [inst.cpu_us_per_request - bare.cpu_us_per_request for bare, inst in pairs]
    print(
        f"  instrumented/bare req/s: {statistics.median(ratios):.1%} "
        f"(same round, median of {len(pairs)}; {min(ratios):.1%}-{max(ratios):.1%})"
    )
    print(
        f"  CPU µs added per request: {statistics.median(added):.1f} "
        f"(instrumented minus bare, same round, median; {min(added):.1f}-{max(added):.1f})"
    )
