"""Fixtures for the live-data tests: a real ZooKeeper, clients, the tools as processes.

One ZooKeeper serves the whole session (each test works under a node of its
own, removed afterwards); the tests that stop and restart a server start
their own with :func:`own_zookeeper`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests._helpers import wait_until
from tests.live_data.zookeeper_server import ZooKeeperServer

ZK_USER = "live-data-test"
ZK_PASSWORD = "correct horse"
DIGEST = f"{ZK_USER}:{ZK_PASSWORD}"
CREDENTIALS_SECRET = "secret/zookeeper/live-data"


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_zookeeper(tmp_path) -> Iterator[ZooKeeperServer]:
    """A server of the test's own, which it may stop and start again."""
    server = ZooKeeperServer(tmp_path / "zookeeper")
    server.start()
    yield server
    server.stop()


def connected_client(hosts: str, **options) -> KazooClient:
    client = KazooClient(hosts, **options)
    client.start(timeout=10)
    return client


@contextlib.contextmanager
def session_on(hosts: str, **options) -> Iterator[KazooClient]:
    """A connected client for the length of a ``with`` block, closed after it."""
    client = connected_client(hosts, **options)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def zk(zookeeper_server) -> Iterator[KazooClient]:
    """A connected client of the session's server, to arrange and change nodes.

    It holds the test user's credentials, so that it can also remove the
    nodes a test protected.
    """
    client = connected_client(zookeeper_server.hosts, auth_data=[("digest", DIGEST)])
    yield client
    client.stop()
    client.close()


@pytest.fixture
def root(zk) -> Iterator[str]:
    """A fresh node for the test to work under, removed afterwards with all it holds."""
    path = f"/test-{uuid.uuid4().hex}"
    zk.create(path)
    yield path
    zk.delete(path, recursive=True)


def write_secrets(path: Path, secrets: Mapping[str, str]) -> Path:
    """A secrets file holding simple secrets, as the secrets fetcher writes it."""
    document = {
        "secrets": {name: {"type": "simple", "value": value} for name, value in secrets.items()},
        "vault": {"url": "http://vault.example.com:8200/", "token": "test-token"},
    }
    path.write_text(json.dumps(document))
    return path


def write_ini(path: Path, options: Mapping[str, object], section: str = "live-data") -> Path:
    lines = [f"[{section}]", *(f"{key} = {value}" for key, value in options.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


class ToolProcess:
    """``python -m <module> ...`` running in the background, its log in a file.

    The log goes to a file rather than a pipe, which a long-running process
    could fill while nobody reads it.
    """

    def __init__(self, log_path: Path, module: str, *args: str) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str) -> None:
        """Wait until the process has logged ``text``; fail if it exits first."""

        def logged() -> bool:
            if text in self.log():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()}")
            return False

        wait_until(logged, f"{text!r} in the log")

    def stop(self) -> int:
        """SIGTERM, and the exit status once it has exited."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop on SIGTERM:\n{self.log()}") from None


def run_writer(*args: object) -> subprocess.CompletedProcess[str]:
    """``python -m baseplate.live_data.writer ARGS`` run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "baseplate.live_data.writer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def start_watcher(tmp_path) -> Iterator:
    """Start ``python -m baseplate.live_data.watcher CONFIG``; each is stopped afterwards."""
    started: list[ToolProcess] = []

    def start(config_path: Path) -> ToolProcess:
        log_path = tmp_path / f"watcher-{len(started)}.log"
        watcher = ToolProcess(log_path, "baseplate.live_data.watcher", str(config_path))
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.stop()
