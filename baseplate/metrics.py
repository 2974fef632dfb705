"""Application metrics via statsd.

Counters, timers, gauges and histograms are written as statsd lines
(``name:value|type[|@rate]``) into UDP datagrams, or Unix datagrams when the
endpoint is a socket path::

    client = metrics_client_from_config(app_config)
    client.counter("events.connect").increment()
    client.gauge("workers").replace(4)

    with client.timer("something.todo"):
        do_something()

Several metrics can share a datagram through a :class:`Batch`, which is sent
when its ``with`` block ends. Sending never blocks and never raises into the
caller: a datagram the socket cannot take right now is dropped, counted on
the transport and logged.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Iterator
from typing import Protocol

from baseplate.config import EndpointConfiguration

logger = logging.getLogger(__name__)

#: The largest payload a UDP datagram over IPv4 can carry. A batch larger than
#: this is split at line boundaries into several datagrams.
MAX_DATAGRAM_BYTES = 65507

#: How long a transport whose socket could not be connected waits before it
#: tries again; datagrams sent meanwhile are dropped and counted.
RECONNECT_INTERVAL_SECONDS = 10.0


class Transport(Protocol):
    """Where serialized metrics go.

    Implementations must not block and must not raise: metrics are
    best-effort telemetry and the request that emits them comes first.
    """

    def send(self, serialized_metric: bytes) -> None:
        """Deliver one or more newline-separated statsd lines."""


class NullTransport:
    """A transport that discards everything, for when no endpoint is set."""

    def send(self, serialized_metric: bytes) -> None:
        """Drop the metric, logging it at debug level."""
        logger.debug("metrics not sent (no endpoint configured): %r", serialized_metric)


class SocketTransport:
    """Sends each payload as one datagram on a connected, non-blocking socket.

    Datagrams that cannot be sent (nobody listening, socket buffer full,
    payload too large, endpoint not resolvable) are dropped and counted in
    :attr:`dropped_datagrams`; each kind of failure is logged at warning level
    the first time and at debug level after that, so a dead statsd does not
    flood the application log.
    """

    def __init__(self, endpoint: EndpointConfiguration) -> None:
        self.endpoint = endpoint
        #: Datagrams that could not be sent since this transport was made.
        self.dropped_datagrams = 0
        self._socket: socket.socket | None = None
        self._next_connect_attempt = 0.0
        self._reported_failures: set[str] = set()
        self._connect()

    def _connect(self) -> None:
        sock = socket.socket(self.endpoint.family, socket.SOCK_DGRAM)
        try:
            sock.connect(self.endpoint.address)
        except OSError as exc:
            sock.close()
            self._next_connect_attempt = time.monotonic() + RECONNECT_INTERVAL_SECONDS
            self._report_failure(f"cannot connect to {self.endpoint}", exc)
            return
        sock.setblocking(False)
        self._socket = sock

    def send(self, serialized_metric: bytes) -> None:
        """Send the payload as a single datagram, or count it as dropped."""
        if self._socket is None and time.monotonic() >= self._next_connect_attempt:
            self._connect()
        if self._socket is None:
            self.dropped_datagrams += 1
            return
        try:
            self._socket.send(serialized_metric)
        except OSError as exc:
            self.dropped_datagrams += 1
            self._report_failure(f"dropped a {len(serialized_metric)}-byte datagram", exc)

    def _report_failure(self, what: str, exc: OSError) -> None:
        kind = f"{what.split(' ', 1)[0]}:{type(exc).__name__}:{exc.errno}"
        level = logging.DEBUG if kind in self._reported_failures else logging.WARNING
        self._reported_failures.add(kind)
        logger.log(level, "metrics to %s: %s: %s", self.endpoint, what, exc)

    def close(self) -> None:
        """Close the socket; later sends reconnect."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _format_number(value: float) -> str:
    # statsd peers have always seen numbers formatted this way: six
    # significant digits, exponent notation for very large or small values.
    return f"{value:g}"


def _counter_line(name: str, delta: float, sample_rate: float) -> str:
    line = f"{name}:{_format_number(delta)}|c"
    if sample_rate != 1.0:
        line += f"|@{_format_number(sample_rate)}"
    return line


@functools.lru_cache(maxsize=4096)  # services reuse a small set of names per request
def _metric_name(namespace: str, name: str) -> str:
    full_name = ".".join(part for part in (namespace.strip("."), name.strip(".")) if part)
    full_name.encode("ascii")  # statsd names are ASCII: fail here, not at send time
    return full_name


class _Metric:
    """A named metric that writes its lines to a transport."""

    __slots__ = ("name", "transport")

    def __init__(self, transport: Transport, name: str) -> None:
        self.transport = transport
        self.name = name


class Counter(_Metric):
    """A counter for counting events over time."""

    __slots__ = ()

    def increment(self, delta: float = 1, sample_rate: float = 1.0) -> None:
        """Increment the counter by ``delta``.

        ``sample_rate`` (0 to 1) is reported to statsd, which scales the
        count up accordingly; sampling itself is up to the caller.
        """
        self.send(delta, sample_rate)

    def decrement(self, delta: float = 1, sample_rate: float = 1.0) -> None:
        """Decrement the counter: :meth:`increment` with ``delta`` negated."""
        self.increment(-delta, sample_rate)

    def send(self, delta: float, sample_rate: float) -> None:
        """Send the counter's change to the backend."""
        self.transport.send(_counter_line(self.name, delta, sample_rate).encode())


class Timer(_Metric):
    """A timer for recording elapsed times, in milliseconds.

    Also a context manager: entering starts it, leaving stops it.
    """

    __slots__ = ("_start_time",)

    def __init__(self, transport: Transport, name: str) -> None:
        self.transport = transport
        self.name = name
        self._start_time: float | None = None

    def start(self) -> None:
        """Record the current time as the start of the timer."""
        self._start_time = time.time()

    def stop(self) -> None:
        """Stop the timer and send the time elapsed since :meth:`start`."""
        if self._start_time is None:
            raise RuntimeError(f"timer {self.name!r} was stopped before it was started")
        elapsed = time.time() - self._start_time
        self._start_time = None
        self.send(elapsed)

    def send(self, elapsed: float) -> None:
        """Send a measured duration, given in seconds.

        .. versionadded:: 0.31
           For callers that measured the time themselves.
        """
        self.transport.send(f"{self.name}:{_format_number(elapsed * 1000.0)}|ms".encode())

    def __enter__(self) -> Timer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Gauge(_Metric):
    """A gauge holding an arbitrary, non-negative value.

    Relative changes (``+3``) are deliberately not offered: statsd forgets the
    current value when it restarts, which makes them unpredictable.
    """

    __slots__ = ()

    def replace(self, new_value: float) -> None:
        """Replace the value held by the gauge.

        Negative values cannot be expressed in the protocol (a leading ``-``
        means "decrease"), so they raise :exc:`ValueError` and nothing is sent.
        """
        if new_value < 0:
            raise ValueError(f"gauge {self.name!r} cannot hold a negative value: {new_value}")
        self.transport.send(f"{self.name}:{_format_number(new_value)}|g".encode())


class Histogram(_Metric):
    """A distribution of values, bucketed by the statsd backend.

    The backend must support the ``h`` type (``metric_name:320|h``); bucket
    ranges are configured there, not here.
    """

    __slots__ = ()

    def add_sample(self, value: float) -> None:
        """Add a value to the histogram."""
        self.transport.send(f"{self.name}:{_format_number(value)}|h".encode())


class BaseClient:
    """Makes metrics named under a namespace that send through a transport."""

    def __init__(self, transport: Transport, namespace: str) -> None:
        self.transport = transport
        self.namespace = namespace

    def counter(self, name: str) -> Counter:
        """Return a :class:`Counter` with the given name."""
        return Counter(self.transport, _metric_name(self.namespace, name))

    def timer(self, name: str) -> Timer:
        """Return a :class:`Timer` with the given name."""
        return Timer(self.transport, _metric_name(self.namespace, name))

    def gauge(self, name: str) -> Gauge:
        """Return a :class:`Gauge` with the given name."""
        return Gauge(self.transport, _metric_name(self.namespace, name))

    def histogram(self, name: str) -> Histogram:
        """Return a :class:`Histogram` with the given name."""
        return Histogram(self.transport, _metric_name(self.namespace, name))


class Client(BaseClient):
    """A client for statsd: each metric is sent at once, in its own datagram."""

    def batch(self) -> Batch:
        """Return a client-like object that sends its metrics together on flush."""
        return Batch(self.transport, self.namespace)


class BatchCounter(Counter):
    """A counter inside a batch: changes are summed until the batch is flushed.

    The batch sends one line per sample rate with the net change, even if
    that is zero.
    """

    __slots__ = ("_deltas",)

    def __init__(self, transport: Transport, name: str) -> None:
        super().__init__(transport, name)
        self._deltas: dict[float, float] = {}

    def send(self, delta: float, sample_rate: float) -> None:
        """Add the change to the batch's running total for this sample rate."""
        self._deltas[sample_rate] = self._deltas.get(sample_rate, 0) + delta

    def _drain(self) -> list[bytes]:
        lines = [
            _counter_line(self.name, delta, sample_rate).encode()
            for sample_rate, delta in self._deltas.items()
        ]
        self._deltas.clear()
        return lines


class Batch(BaseClient):
    """A batch of metrics sent together when flushed.

    Timers, gauges and histograms are kept in the order they were recorded;
    counters are summed and come last, in the order they were first asked for.
    As a context manager the batch flushes when the block ends, also on error.
    """

    def __init__(self, transport: Transport, namespace: str) -> None:
        super().__init__(self, namespace)
        self._destination = transport
        self._lines: list[bytes] = []
        self._counters: dict[str, BatchCounter] = {}

    def send(self, serialized_metric: bytes) -> None:
        """Buffer a serialized metric until the next :meth:`flush`."""
        self._lines.append(serialized_metric)

    def counter(self, name: str) -> BatchCounter:
        """Return the batch's counter with the given name."""
        full_name = _metric_name(self.namespace, name)
        counter = self._counters.get(full_name)
        if counter is None:
            counter = self._counters[full_name] = BatchCounter(self, full_name)
        return counter

    def flush(self) -> None:
        """Send what the batch holds and empty it.

        Everything goes in one datagram unless that would exceed
        :data:`MAX_DATAGRAM_BYTES`; then it is split at line boundaries so no
        metric is lost. An empty batch sends nothing.
        """
        lines = self._lines
        self._lines = []
        for counter in self._counters.values():
            lines.extend(counter._drain())
        if not lines:
            return
        payload = b"\n".join(lines)
        if len(payload) <= MAX_DATAGRAM_BYTES:
            self._destination.send(payload)
            return
        for packet in _split_into_datagrams(lines):
            self._destination.send(packet)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()


def _split_into_datagrams(lines: list[bytes]) -> Iterator[bytes]:
    packet: list[bytes] = []
    packet_size = 0
    for line in lines:
        if packet and packet_size + 1 + len(line) > MAX_DATAGRAM_BYTES:
            yield b"\n".join(packet)
            packet, packet_size = [], 0
        packet_size += len(line) + (1 if packet else 0)
        packet.append(line)
    if packet:
        yield b"\n".join(packet)


def make_client(namespace: str, endpoint: EndpointConfiguration | None) -> Client:
    """Return a client prefixing every metric name with ``namespace``.

    With ``endpoint`` None the client discards everything it is given.
    """
    transport: Transport = NullTransport() if endpoint is None else SocketTransport(endpoint)
    return Client(transport, namespace)
