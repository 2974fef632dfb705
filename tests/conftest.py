from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


class DatagramReceiver:
    """A real datagram socket standing in for statsd."""

    def __init__(self, family: int, address: str | tuple[str, int]) -> None:
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.socket.bind(address)
        self.socket.setblocking(False)
        self.address = self.socket.getsockname()

    @property
    def endpoint(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        return f"{host}:{port}"

    def received(self) -> list[bytes]:
        """Every datagram queued so far (loopback delivery is synchronous)."""
        datagrams = []
        while True:
            try:
                datagrams.append(self.socket.recv(1 << 17))
            except BlockingIOError:
                return datagrams

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def statsd() -> Iterator[DatagramReceiver]:
    receiver = DatagramReceiver(socket.AF_INET, ("127.0.0.1", 0))
    yield receiver
    receiver.close()


@pytest.fixture
def unix_statsd(tmp_path) -> Iterator[DatagramReceiver]:
    receiver = DatagramReceiver(socket.AF_UNIX, str(tmp_path / "statsd.sock"))
    yield receiver
    receiver.close()


class FrozenClock:
    """A settable replacement for ``time.time``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock(1500000000.0)
    monkeypatch.setattr("time.time", frozen)
    return frozen


@pytest.fixture(autouse=True)
def _close_metrics_sockets(monkeypatch):
    """``metrics_client_from_config`` and ``make_client``, closing the sockets they open."""
    from baseplate import metrics

    transports = []
    real_transport = metrics.SocketTransport

    def tracked_transport(endpoint):
        transport = real_transport(endpoint)
        transports.append(transport)
        return transport

    monkeypatch.setattr(metrics, "SocketTransport", tracked_transport)
    yield
    for transport in transports:
        transport.close()
