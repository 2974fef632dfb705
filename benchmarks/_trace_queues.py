"""What the trace export benchmarks share: POSIX queues made at this machine's
limits, readers that drain them (a thread here, or a separate process as the
trace publisher is), a no-op exporter, and the sidecar report."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import posix_ipc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

SERVICE_NAME = "bench"
#: The queue is made at the system's limits (or these, if the limits cannot be read).
DEFAULT_MSG_MAX = 10
DEFAULT_MSGSIZE_MAX = 8192

#: The loggers that warn of dropped spans: the batching processor's and the exporters'.
DROP_LOGGERS = ("opentelemetry.sdk._shared_internal", "bridge.export")

# A trace publisher stand-in: counts records until it reads the empty record,
# then prints how many it read.
_READER_PROCESS = """
import sys, posix_ipc
queue = posix_ipc.MessageQueue(sys.argv[1], read=True, write=False)
count = 0
while True:
    message, _ = queue.receive()
    if not message:
        break
    count += 1
print(count)
"""


class NoopExporter(SpanExporter):
    """Takes every span and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


# -- queues and their readers -------------------------------------------------


def _queue_limit(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/fs/mqueue/{name}") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return default


class Queues:
    """The POSIX queues this run made; all are unlinked by :meth:`unlink_all`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.max_messages = _queue_limit("msg_max", DEFAULT_MSG_MAX)
        self.max_message_size = _queue_limit("msgsize_max", DEFAULT_MSGSIZE_MAX)

    def create(self, label: str) -> str:
        """Make ``/traces-<name>`` and return ``<name>``, the exporter's queue name."""
        name = f"bench-{os.getpid()}-{label}"
        queue = posix_ipc.MessageQueue(
            f"/traces-{name}",
            posix_ipc.O_CREX,
            max_messages=self.max_messages,
            max_message_size=self.max_message_size,
        )
        self.paths.append(queue.name)
        queue.close()
        return name

    def unlink_all(self) -> None:
        for path in self.paths:
            with suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_message_queue(path)
        self.paths.clear()


class ThreadReader:
    """Drains a queue from a thread of this process, counting what arrives."""

    def __init__(self, queue_name: str) -> None:
        self.queue = posix_ipc.MessageQueue(f"/traces-{queue_name}", read=True, write=False)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        receive = self.queue.receive
        while not self._stop.is_set():
            try:
                receive(0.05)
            except posix_ipc.BusyError:
                continue
            self.received += 1

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (everything sent so far was read)."""
        deadline = time.monotonic() + timeout
        while self.queue.current_messages and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> int:
        self.settle()
        self._stop.set()
        self._thread.join()
        self.queue.close()
        return self.received


class ProcessReader:
    """Drains a queue from a separate process, as the trace publisher does."""

    def __init__(self, queue_name: str) -> None:
        self.path = f"/traces-{queue_name}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _READER_PROCESS, self.path], stdout=subprocess.PIPE, text=True
        )
        self.queue = posix_ipc.MessageQueue(self.path, read=False, write=True)

    def settle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.current_messages and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> int:
        """Stop the reader and return how many records it read."""
        try:
            self.queue.send(b"", timeout=5)
            out, _ = self.process.communicate(timeout=10)
            return int(out.strip() or 0)
        except (posix_ipc.Error, subprocess.TimeoutExpired, ValueError):
            self.process.kill()
            self.process.wait()
            return -1
        finally:
            self.queue.close()


Reader = ThreadReader | ProcessReader

#: Each sidecar path is measured twice: drained by a thread of the benchmark's
#: own process, and by a separate process, as the trace publisher is.
READERS: dict[str, type[Reader]] = {"thread": ThreadReader, "process": ProcessReader}


@contextmanager
def sidecar_queues() -> Iterator[Queues]:
    """Queues for one run, unlinked at its end; drop warnings stay off stderr meanwhile.

    The benchmarks count and report the spans they drop, so the warnings
    would only repeat that on stderr.
    """
    quiet = logging.NullHandler()
    loggers = [logging.getLogger(name) for name in DROP_LOGGERS]
    for logger in loggers:
        logger.addHandler(quiet)
    queues = Queues()
    try:
        yield queues
    finally:
        queues.unlink_all()
        for logger in loggers:
            logger.removeHandler(quiet)


def print_sidecars(sidecars: dict[str, tuple[int, int, int]]) -> None:
    print(f"{'sidecar queue':<40} {'sent':>9} {'arrived':>9} {'dropped':>9} {'arrived %':>9}")
    for name, (sent, arrived, dropped) in sidecars.items():
        share = 100 * arrived / sent if sent else 0.0
        unaccounted = sent - arrived - dropped
        note = f"  ({unaccounted:+,} unaccounted)" if unaccounted else ""
        print(f"{name:<40} {sent:>9,} {arrived:>9,} {dropped:>9,} {share:>8.1f}%{note}")
