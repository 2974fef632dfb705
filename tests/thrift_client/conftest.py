"""Fixtures for the Thrift client tests: generated code and real Thrift servers.

``example.thrift`` is compiled with the ``thrift`` compiler once per session.
:class:`ExampleServer` runs the Thrift runtime's own threaded server, speaking
THeader, on 127.0.0.1 or on a Unix socket, in daemon threads; its handler
records the method and the THeader headers of every call it receives.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
from thrift.server import TServer
from thrift.transport import TSocket, TTransport
from thrift.transport.THeaderTransport import THeaderClientType

from baseplate.config import EndpointConfiguration
from baseplate.thrift_pool import ThriftConnectionPool
from tests._helpers import closed_afterwards

IDL = Path(__file__).with_name("example.thrift")


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The Python code generated from ``example.thrift``, importable."""
    out = tmp_path_factory.mktemp("thrift-gen")
    subprocess.run(["thrift", "--gen", "py", "-out", str(out), str(IDL)], check=True)
    sys.path.insert(0, str(out))
    try:
        yield SimpleNamespace(
            path=out,
            ExampleService=importlib.import_module("thrift_client_example.ExampleService"),
            ttypes=importlib.import_module("thrift_client_example.ttypes"),
        )
    finally:
        sys.path.remove(str(out))


@dataclass
class Call:
    method: str
    headers: dict[bytes, bytes]


class _Handler:
    def __init__(self, server: ExampleServer, ttypes: ModuleType) -> None:
        self.server = server
        self.ttypes = ttypes

    def echo(self, message: str) -> str:
        self.server.record("echo")
        return message

    def sleep(self, seconds: float) -> None:
        self.server.record("sleep")
        with self.server.lock:
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        try:
            self.server.stopped.wait(seconds)  # cut short when the server stops
        finally:
            with self.server.lock:
                self.server.active -= 1

    def fail_declared(self, reason: str) -> None:
        self.server.record("fail_declared")
        raise self.ttypes.Oops(reason=reason)

    def fail_undeclared(self) -> None:
        self.server.record("fail_undeclared")
        raise RuntimeError("the handler broke")

    def drop_connection(self, key: str, times: int) -> int:
        self.server.record("drop_connection")
        with self.server.lock:
            self.server.drops[key] += 1
            count = self.server.drops[key]
        if count <= times:
            # The generated processor re-raises transport errors and the
            # server then closes the connection without a reply.
            raise TTransport.TTransportException(message="dropped on purpose")
        return count


class _RecordingProcessor:
    """Lets the handler see the input protocol, and so the THeader headers."""

    def __init__(self, processor: Any, local: threading.local) -> None:
        self.processor = processor
        self.local = local

    def process(self, iprot: Any, oprot: Any) -> Any:
        self.local.iprot = iprot
        return self.processor.process(iprot, oprot)


class _BoundServerSocket(TSocket.TServerSocket):
    """A server transport over a socket that is already listening."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.handle = sock

    def listen(self) -> None:
        pass  # bound and listening before the server thread starts


class _StoppableThreadedServer(TServer.TThreadedServer):
    """The runtime's threaded server, with an accept loop that ends on stop."""

    def __init__(self, owner: ExampleServer, processor: Any, transport: Any) -> None:
        super().__init__(
            processor,
            transport,
            TTransport.TTransportFactoryBase(),
            # THeader, and unframed binary for clients of other protocols.
            THeaderProtocolFactory(
                allowed_client_types=(THeaderClientType.HEADERS, THeaderClientType.UNFRAMED_BINARY)
            ),
            daemon=True,
        )
        self.owner = owner

    def serve(self) -> None:
        self.serverTransport.listen()
        while not self.owner.stopped.is_set():
            try:
                client = self.serverTransport.accept()
            except OSError:
                continue  # the listening socket was shut down: stopped is set
            self.owner.accepted(client.handle)
            thread = threading.Thread(target=self.handle, args=(client,), daemon=True)
            self.owner.threads.append(thread)
            thread.start()


class ExampleServer:
    """A real ``ExampleService`` server; ``calls`` lists what it received."""

    def __init__(
        self,
        generated: SimpleNamespace,
        family: socket.AddressFamily = socket.AF_INET,
        address: tuple[str, int] | str = ("127.0.0.1", 0),
    ) -> None:
        self.generated = generated
        self.family = family
        self.address = address
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.drops: Counter[str] = Counter()
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._local = threading.local()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> EndpointConfiguration:
        return EndpointConfiguration(self.family, self.address)

    def record(self, method: str) -> None:
        headers = dict(self._local.iprot.trans.get_headers())
        with self.lock:
            self.calls.append(Call(method, headers))

    def accepted(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            self._clients.append(sock)

    def start(self) -> ExampleServer:
        """Listen (again, on the same address after a stop) and serve."""
        listener = socket.socket(self.family, socket.SOCK_STREAM)
        if self.family != socket.AF_UNIX:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self.address)
        listener.listen(16)
        self.address = listener.getsockname()
        self._listener = listener
        self.stopped.clear()
        handler = _Handler(self, self.generated.ttypes)
        processor = _RecordingProcessor(
            self.generated.ExampleService.Processor(handler), self._local
        )
        server = _StoppableThreadedServer(self, processor, _BoundServerSocket(listener))
        self._thread = threading.Thread(target=server.serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every open connection, as if the server died."""
        self.stopped.set()
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
            self._listener.close()
            self._listener = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self.lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):  # already closed by its handler thread
                client.shutdown(socket.SHUT_RDWR)
        threads, self.threads = self.threads, []
        for thread in threads:
            thread.join(5)
        if self.family == socket.AF_UNIX and isinstance(self.address, str):
            Path(self.address).unlink(missing_ok=True)

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]


@pytest.fixture
def server(generated) -> Iterator[ExampleServer]:
    running = ExampleServer(generated).start()
    yield running
    running.stop()


@pytest.fixture
def unix_server(generated) -> Iterator[ExampleServer]:
    # Unix socket paths are short (108 bytes): not under pytest's tmp_path.
    directory = tempfile.mkdtemp(prefix="thrift-client-")
    running = ExampleServer(generated, socket.AF_UNIX, f"{directory}/example.sock").start()
    yield running
    running.stop()
    shutil.rmtree(directory)


@pytest.fixture
def make_pool() -> Iterator[Any]:
    """Make pools that are closed at the end of the test."""
    with closed_afterwards(ThriftConnectionPool) as make:
        yield make
