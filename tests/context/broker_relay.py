"""A TCP relay on loopback in front of RabbitMQ, to take the broker away and bring it back.

The tests cannot stop the machine's RabbitMQ, and must not. Clients that
connect through a :class:`BrokerRelay` see what they would see if the broker
went away: :meth:`~BrokerRelay.drop_connections` cuts every connection (as a
broker restart or a network failure does), :meth:`~BrokerRelay.refuse`
stops listening so that connecting is refused, and :meth:`~BrokerRelay.resume`
listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading

#: How long the accepting thread blocks before it checks whether to stop.
_POLL_INTERVAL = 0.05
#: How long stopping waits for each thread.
_JOIN_TIMEOUT = 5.0


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)


class _Link:
    """One client connection and the relay's connection upstream, pumped both ways."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut: the other direction is shut down below
        for sock in self.sockets:
            _shutdown(sock)

    def cut(self) -> None:
        for sock in self.sockets:
            _shutdown(sock)
        for thread in self.threads:
            thread.join(_JOIN_TIMEOUT)
        for sock in self.sockets:
            sock.close()


class BrokerRelay:
    """Relays connections made to ``127.0.0.1:<port>`` to the broker at ``target``."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.target = target
        self.port = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stop = threading.Event()
        self.resume()

    def resume(self) -> None:
        """Listen (again, on the same port) and relay whatever connects."""
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(_POLL_INTERVAL)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.target, timeout=_JOIN_TIMEOUT)
            upstream.settimeout(None)
            with self._lock:
                self._links.append(_Link(client, upstream))

    def drop_connections(self) -> None:
        """Cut every relayed connection, as a broker that goes away does."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.cut()

    def refuse(self) -> None:
        """Stop listening, so that connecting is refused, and cut every connection."""
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(_JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        self._listener = self._accepting = None
        self.drop_connections()
