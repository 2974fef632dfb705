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
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from baseplate._state import state
from baseplate.config import EndpointConfiguration
from bridge.failures import FailureLog

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

    A host name is resolved when the transport is made (at start-up) and,
    when that failed, again in a background thread: a request that sends a
    metric never waits for DNS. The last address that resolved is kept and
    reconnected to.
    """

    def __init__(self, endpoint: EndpointConfiguration) -> None:
        self.endpoint = endpoint
        #: Datagrams that could not be sent since this transport was made.
        self.dropped_datagrams = 0
        self._socket: socket.socket | None = None
        self._next_connect_attempt = 0.0
        self._failures = FailureLog(logger)
        self._resolving = threading.Lock()
        self._address = self._resolve()
        if self._address is not None:
            self._connect(self._address)

    def _resolve(self) -> tuple[str, int] | str | None:
        """The endpoint as an address to connect to without a name lookup, or None."""
        address = self.endpoint.address
        if isinstance(address, str):
            return address  # a Unix socket path
        host, port = address
        try:
            found = socket.getaddrinfo(host, port, self.endpoint.family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._report_failure(f"cannot resolve {host}", exc)
            return None
        first = found[0][4]
        return (str(first[0]), int(first[1]))

    def _resolve_in_background(self) -> None:
        """Look the host up again off the caller's path; the next send connects."""
        if not self._resolving.acquire(blocking=False):
            return  # already looking it up

        def resolve() -> None:
            try:
                address = self._resolve()
                if address is not None:
                    self._address = address
            finally:
                self._resolving.release()

        threading.Thread(target=resolve, name="statsd-resolver", daemon=True).start()

    def _connect(self, address: tuple[str, int] | str) -> None:
        sock = socket.socket(self.endpoint.family, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
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
            self._reconnect()
        sock = self._socket
        if sock is None:
            self.dropped_datagrams += 1
            return
        try:
            sock.send(serialized_metric)
        except OSError as exc:
            self.dropped_datagrams += 1
            self._report_failure(f"dropped a {len(serialized_metric)}-byte datagram", exc)

    def _reconnect(self) -> None:
        address = self._address
        if address is None:
            self._next_connect_attempt = time.monotonic() + RECONNECT_INTERVAL_SECONDS
            self._resolve_in_background()
            return
        self._connect(address)

    def _report_failure(self, what: str, exc: OSError) -> None:
        kind = f"{what.split(' ', 1)[0]}:{type(exc).__name__}:{exc.errno}"
        self._failures.report(kind, f"metrics to {self.endpoint}: {what}: {exc}")

    def close(self) -> None:
        """Close the socket; later sends reconnect."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


RawTransport = SocketTransport
"""The original's name for :class:`SocketTransport`: the transport that sends on a socket.

:func:`make_client` gives one for a configured endpoint.
"""


class BufferedTransport:
    """Holds serialized metrics and sends them together when flushed.

    This is what a :class:`Batch` sends its metrics through. The lines go in
    one datagram unless that would exceed :data:`MAX_DATAGRAM_BYTES`; then
    they are split at line boundaries so that no metric is lost. A wrapped
    transport that raises :exc:`OSError` (the built-in ones never do) has the
    error logged instead of passed on, as in the original: the first of each
    kind at warning level, later ones at debug level.

    :param transport: Where flushed payloads go.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        #: The serialized metrics sent since the last flush, in order.
        self.buffer: list[bytes] = []

    def send(self, serialized_metric: bytes) -> None:
        """Hold a serialized metric until the next :meth:`flush`."""
        self.buffer.append(serialized_metric)

    def flush(self) -> None:
        """Send what is held, in as few datagrams as fit, and empty the buffer.

        An empty buffer sends nothing.
        """
        lines, self.buffer = self.buffer, []
        if not lines:
            return
        payload = b"\n".join(lines)
        packets = [payload] if len(payload) <= MAX_DATAGRAM_BYTES else _split_into_datagrams(lines)
        for packet in packets:
            try:
                self.transport.send(packet)
            except OSError as exc:
                state.metrics_flush_failures.report(
                    (type(exc), exc.errno),
                    f"metrics: could not send a {len(packet)}-byte datagram: {exc}",
                )


# Numbers are written f"{value:g}" (inline below, as this is the hot path):
# statsd peers have always seen them this way, with six significant digits and
# exponent notation for very large or small values. An int or a float is
# written b"%g" % float(value) instead, which gives the same bytes without
# making a str first (and fails the same way, OverflowError, for an int too
# large for a float); anything else (a Decimal, say, whose "g" keeps every
# digit) keeps its own formatting.


def _counter_line(name: bytes, delta: float, sample_rate: float) -> bytes:
    if type(delta) is int or type(delta) is float:
        if sample_rate == 1.0:
            return name + b":%g|c" % float(delta)
        if type(sample_rate) is float or type(sample_rate) is int:
            return name + b":%g|c|@%g" % (float(delta), float(sample_rate))
    if sample_rate == 1.0:
        return name + f":{delta:g}|c".encode()
    return name + f":{delta:g}|c|@{sample_rate:g}".encode()


def _ascii(text: str | bytes) -> bytes:
    return text.encode("ascii") if isinstance(text, str) else text


@functools.lru_cache(maxsize=4096)  # services reuse a small set of names per request
def _metric_name(namespace: bytes, name: str) -> bytes:
    # Encoding here makes a non-ASCII name fail when the metric is made, not
    # when it is sent.
    parts = (namespace.strip(b"."), name.encode("ascii").strip(b"."))
    return b".".join(part for part in parts if part)


class _Metric:
    """A named metric that writes its lines to a transport.

    ``name`` is the full metric name as ASCII bytes, as in the original; a
    :class:`str` is accepted and encoded.
    """

    __slots__ = ("name", "transport")

    def __init__(self, transport: Transport, name: bytes | str) -> None:
        self.transport = transport
        self.name = name if type(name) is bytes else _ascii(name)


class Counter(_Metric):
    """A counter for counting events over time.

    :param transport: Where the counter's lines go.
    :param name: The full metric name, as ASCII bytes or text.
    """

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
        self.transport.send(_counter_line(self.name, delta, sample_rate))


class Timer(_Metric):
    """A timer for recording elapsed times, in milliseconds.

    A timer measures one span of time: :meth:`start` it once, :meth:`stop` it
    once, and make a new timer for the next measurement. It is also a context
    manager: entering starts it, leaving stops it.

    :param transport: Where the timer's line goes.
    :param name: The full metric name, as ASCII bytes or text.
    """

    __slots__ = ("_start_time", "_stopped")

    def __init__(self, transport: Transport, name: bytes | str) -> None:
        self.transport = transport
        self.name = name if type(name) is bytes else _ascii(name)
        self._start_time: float | None = None
        self._stopped = False

    def start(self) -> None:
        """Record the current time as the start of the timer.

        :raises RuntimeError: if the timer was already started.
        """
        if self._start_time is not None:
            raise RuntimeError(f"timer {self.name.decode()!r} was already started")
        self._start_time = time.time()

    def stop(self) -> None:
        """Stop the timer and send the time elapsed since :meth:`start`.

        :raises RuntimeError: if the timer was not started, or already stopped;
            nothing is sent.
        """
        start_time = self._start_time
        if start_time is None or self._stopped:
            state = "already stopped" if self._stopped else "stopped before it was started"
            raise RuntimeError(f"timer {self.name.decode()!r} was {state}")
        self._stopped = True
        self.send(time.time() - start_time)

    def send(self, elapsed: float) -> None:
        """Send a duration measured elsewhere, given in seconds.

        This needs neither :meth:`start` nor :meth:`stop`, and may be called
        any number of times.
        """
        milliseconds = elapsed * 1000.0
        if type(milliseconds) is float:
            self.transport.send(self.name + b":%g|ms" % milliseconds)
        else:
            self.transport.send(self.name + f":{milliseconds:g}|ms".encode())

    def __enter__(self) -> Timer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Gauge(_Metric):
    """A gauge holding an arbitrary, non-negative value.

    Relative changes (``+3``) are deliberately not offered: statsd forgets the
    current value when it restarts, which makes them unpredictable.

    :param transport: Where the gauge's lines go.
    :param name: The full metric name, as ASCII bytes or text.
    """

    __slots__ = ()

    def replace(self, new_value: float) -> None:
        """Replace the value held by the gauge.

        Negative values cannot be expressed in the protocol (a leading ``-``
        means "decrease"), so they raise :exc:`ValueError` and nothing is sent.
        """
        if new_value < 0:
            raise ValueError(
                f"gauge {self.name.decode()!r} cannot hold a negative value: {new_value}"
            )
        self.transport.send(self.name + f":{new_value:g}|g".encode())


class Histogram(_Metric):
    """A distribution of values, bucketed by the statsd backend.

    The backend must support the ``h`` type (``metric_name:320|h``); bucket
    ranges are configured there, not here.

    :param transport: Where the histogram's lines go.
    :param name: The full metric name, as ASCII bytes or text.
    """

    __slots__ = ()

    def add_sample(self, value: float) -> None:
        """Add a value to the histogram."""
        self.transport.send(self.name + f":{value:g}|h".encode())


class BaseClient:
    """Makes metrics named under a namespace that send through a transport.

    :param transport: Where the metrics' lines go.
    :param namespace: The prefix of every metric name. It is kept in
        :attr:`namespace` as ASCII bytes, as in the original.
    :raises UnicodeEncodeError: if ``namespace`` is not ASCII.
    """

    def __init__(self, transport: Transport, namespace: str | bytes) -> None:
        #: Where the metrics' lines go.
        self.transport = transport
        #: The prefix of every metric name, as ASCII bytes.
        self.namespace = _ascii(namespace)

    def counter(self, name: str) -> Counter:
        """Return a :class:`Counter` with the given name.

        :raises UnicodeEncodeError: if ``name`` is not ASCII.
        """
        return Counter(self.transport, _metric_name(self.namespace, name))

    def timer(self, name: str) -> Timer:
        """Return a :class:`Timer` with the given name.

        :raises UnicodeEncodeError: if ``name`` is not ASCII.
        """
        return Timer(self.transport, _metric_name(self.namespace, name))

    def gauge(self, name: str) -> Gauge:
        """Return a :class:`Gauge` with the given name.

        :raises UnicodeEncodeError: if ``name`` is not ASCII.
        """
        return Gauge(self.transport, _metric_name(self.namespace, name))

    def histogram(self, name: str) -> Histogram:
        """Return a :class:`Histogram` with the given name.

        :raises UnicodeEncodeError: if ``name`` is not ASCII.
        """
        return Histogram(self.transport, _metric_name(self.namespace, name))


class Client(BaseClient):
    """A client for statsd: each metric is sent at once, in its own datagram."""

    def batch(self) -> Batch:
        """Return a client-like object that sends its metrics together on flush."""
        return Batch(self.transport, self.namespace)


class BatchCounter(Counter):
    """A counter inside a batch: changes are summed until it is flushed.

    :attr:`packets` maps each sample rate to the net change at that rate;
    :meth:`flush` sends one line per sample rate, even if the change is zero.
    """

    __slots__ = ("packets",)

    def __init__(self, transport: Transport, name: bytes | str) -> None:
        self.transport = transport
        self.name = name if type(name) is bytes else _ascii(name)
        #: The net change for each sample rate since the last flush.
        self.packets: dict[float, float] = {}

    def send(self, delta: float, sample_rate: float) -> None:
        """Add the change to the running total for this sample rate."""
        self.packets[sample_rate] = self.packets.get(sample_rate, 0) + delta

    def flush(self) -> None:
        """Send the summed changes to the transport, and start again from zero."""
        for sample_rate, delta in self.packets.items():
            self.transport.send(_counter_line(self.name, delta, sample_rate))
        self.packets.clear()


class Batch(BaseClient):
    """A batch of metrics sent together when flushed.

    Its metrics write to a :class:`BufferedTransport`, its ``transport``,
    wrapped around the client's. Timers, gauges and histograms are kept in the
    order they were recorded; counters are summed, one :class:`BatchCounter`
    per name in ``counters``, and come last, in the order they were first
    asked for. As a context manager the batch flushes when the block ends,
    also on error.

    :param transport: Where the batch goes when flushed.
    :param namespace: The prefix of every metric name, as text or ASCII bytes.
    """

    transport: BufferedTransport

    def __init__(self, transport: Transport, namespace: str | bytes) -> None:
        # What BaseClient.__init__ does, written out: the metrics observer
        # makes a batch for every request.
        self.transport = BufferedTransport(transport)
        self.namespace = namespace if type(namespace) is bytes else _ascii(namespace)
        #: The batch's counters, by full metric name.
        self.counters: dict[bytes, BatchCounter] = {}

    def send(self, serialized_metric: bytes) -> None:
        """Hold a serialized metric until the next :meth:`flush`.

        .. versionadded:: 0.31
           A batch is itself a transport.
        """
        self.transport.send(serialized_metric)

    def counter(self, name: str) -> BatchCounter:
        """Return the batch's counter with the given name.

        Asking twice for the same name gives the same counter.

        :raises UnicodeEncodeError: if ``name`` is not ASCII.
        """
        full_name = _metric_name(self.namespace, name)
        counter = self.counters.get(full_name)
        if counter is None:
            counter = self.counters[full_name] = BatchCounter(self.transport, full_name)
        return counter

    def flush(self) -> None:
        """Send what the batch holds and empty it.

        Everything goes in one datagram unless that would exceed
        :data:`MAX_DATAGRAM_BYTES`; then it is split at line boundaries so no
        metric is lost. An empty batch sends nothing.
        """
        transport = self.transport
        # Each counter's lines are what BatchCounter.flush would send, written
        # here into the buffer directly: this runs at the end of every request.
        direct = type(transport) is BufferedTransport
        for counter in self.counters.values():
            if not (direct and type(counter) is BatchCounter and counter.transport is transport):
                counter.flush()
                continue
            packets = counter.packets
            if packets:
                name = counter.name
                buffer = transport.buffer
                for sample_rate, delta in packets.items():
                    if sample_rate == 1.0 and (type(delta) is int or type(delta) is float):
                        # Most counters of a request went up once: skip formatting 1.
                        buffer.append(name + (b":1|c" if delta == 1 else b":%g|c" % float(delta)))
                    else:
                        buffer.append(_counter_line(name, delta, sample_rate))
                packets.clear()
        transport.flush()

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

    With an ``endpoint``, the client's :attr:`~BaseClient.transport` is a
    :class:`SocketTransport` (the original's :class:`RawTransport`); with
    ``endpoint`` None it is a :class:`NullTransport`, and the client discards
    everything it is given.

    :raises UnicodeEncodeError: if ``namespace`` is not ASCII.
    """
    transport: Transport = NullTransport() if endpoint is None else SocketTransport(endpoint)
    return Client(transport, namespace)
