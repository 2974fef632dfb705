"""A real memcached for the memcache client tests, on a spare loopback port.

Debian's ``memcached`` (``scripts/test`` installs it when missing) runs as a
subprocess that the test owns: it can be stopped and started again on the
same port, or paused (``SIGSTOP``) so that commands time out.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class MemcachedServer:
    """One memcached process on 127.0.0.1 (or a Unix socket), restartable in place.

    :param unix_path: Listen on this Unix socket instead of a TCP port.
    """

    def __init__(self, unix_path: str | None = None) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            raise AssertionError(
                "memcached is not installed: run scripts/test, or apt-get install memcached"
            )
        self.binary = binary
        self.unix_path = unix_path
        self.port = 0 if unix_path else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The address as ``memcache.endpoint`` takes it."""
        return self.unix_path or f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        # -U 0: no UDP; -A: allow the "shutdown" command; root needs -u.
        where = (
            ["-s", self.unix_path] if self.unix_path else ["-l", "127.0.0.1", "-p", str(self.port)]
        )
        user = ["-u", "root"] if os.geteuid() == 0 else []
        return [self.binary, *where, "-U", "0", "-A", *user]

    def start(self) -> MemcachedServer:
        """Start memcached and wait until it answers ``version``."""
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                raise AssertionError(f"memcached exited: {self.process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"memcached did not answer within {START_TIMEOUT} seconds")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        """Whether the server answers ``version`` now."""
        family = socket.AF_UNIX if self.unix_path else socket.AF_INET
        address = self.unix_path or ("127.0.0.1", self.port)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(address)
                probe.sendall(b"version\r\n")
                return probe.recv(64).startswith(b"VERSION ")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server, as if it crashed; its clients' connections are cut."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case it was paused
            process.kill()
        process.wait(STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()

    def pause(self) -> None:
        """Freeze the server: connections are still accepted, but nothing is answered.

        Returns once the kernel shows every thread of the process stopped: a
        stop signal is delivered asynchronously, and a command sent before it
        lands would still be answered.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = [_state(task) for task in tasks.iterdir()]
            if states and all(state in ("T", "t") for state in states):
                return
            time.sleep(0.005)
        raise AssertionError("memcached did not stop within 5 seconds")

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def running_memcached(unix_path: str | None = None) -> Iterator[MemcachedServer]:
    """A started :class:`MemcachedServer`, killed on exit."""
    server = MemcachedServer(unix_path)
    try:
        yield server.start()
    finally:
        server.stop()


def _state(task: Path) -> str:
    """The scheduler state letter of one thread, from ``/proc/<pid>/task/<tid>/stat``."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return "T"  # gone: it cannot answer either
    return stat.rsplit(")", 1)[1].split()[0]
