"""Helpers for the tests of the commands: real subprocesses on real sockets."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

BIN_DIR = Path(sys.executable).parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0

LISTENING_RE = r"listening on (?P<address>\S+)"


def command(name: str) -> str:
    """The path of one of the installed console scripts."""
    return str(BIN_DIR / name)


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path``."""
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def write_files(directory: Path, files: dict[str, str]) -> Path:
    """:func:`write` each of ``files`` (name: text) into ``directory``; return the directory."""
    for name, text in files.items():
        write(directory / name, text)
    return directory


def run_command(
    name: str, *args: str, cwd: Path, stdin: str = "", timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a console script to completion, capturing stdout and stderr."""
    return subprocess.run(
        [command(name), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_environ(),
        check=False,
    )


def child_environ(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, minus stale Einhorn variables, plus ``extra``."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("EINHORN_")}
    environ["PYTHONDONTWRITEBYTECODE"] = "1"
    environ.update(extra)
    return environ


class ServerProcess:
    """A ``baseplate-serve`` subprocess whose output (stdout and stderr) is collected."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [command("baseplate-serve"), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env if env is not None else child_environ(),
            pass_fds=pass_fds,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(
        self, pattern: str, timeout: float = START_TIMEOUT, start: int = 0
    ) -> re.Match[str]:
        """The first output line from index ``start`` on that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                finished = self.process.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or finished:
                    raise AssertionError(
                        f"no output line matched {pattern!r}; output:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.2))

    def line_count(self) -> int:
        with self._changed:
            return len(self.lines)

    def address(self) -> str:
        """The address the server logged it listens on."""
        return self.wait_for(LISTENING_RE)["address"]

    def port(self) -> int:
        return int(self.address().rpartition(":")[2])

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``signum`` and return the exit status."""
        self.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    def kill(self) -> None:
        """Make sure the process is gone and its pipe closed (fixture teardown)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()


class ServerGroup:
    """Starts servers and kills whatever is left of them on exit."""

    def __init__(self) -> None:
        self.servers: list[ServerProcess] = []

    def start(
        self,
        *args: str,
        cwd: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> ServerProcess:
        server = ServerProcess(list(args), cwd, env, pass_fds)
        self.servers.append(server)
        return server

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in self.servers:
            server.kill()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix domain socket."""

    def __init__(self, path: str, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def http_connection(address: str, timeout: float = REQUEST_TIMEOUT) -> http.client.HTTPConnection:
    """A connection to ``host:port`` or to a Unix socket path."""
    if "/" in address:
        return UnixHTTPConnection(address, timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def http_get(
    address: str, path: str, timeout: float = REQUEST_TIMEOUT, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """``GET path`` on a new connection; the status and the body."""
    connection = http_connection(address, timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(address: str, path: str, expected: tuple[int, str]) -> bool:
    """Whether ``GET path`` answers ``expected`` now; False while nothing listens."""
    try:
        return http_get(address, path, timeout=2) == expected
    except OSError:
        return False


def one_line(text: str) -> str:
    """Assert ``text`` is exactly one non-empty line and return it."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def error_line(result: subprocess.CompletedProcess[str], name: str) -> str:
    """Assert the command ``name`` failed with one line, ``<name>: error: ...``; return it."""
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"{name}: error: "), line
    return line


THRIFT_IDL = """
exception Oops {
    1: string why
}

service Echo {
    string echo(1: string text),
    i32 sleep_ms(1: i32 ms),
    void fail() throws (1: Oops oops),
    void crash(),
}
"""

THRIFT_APP = """
import logging
import time

from baseplate import config
from echo_service import Echo
from echo_service.ttypes import Oops

log = logging.getLogger("echoapp")


class Handler:
    def echo(self, text):
        return text

    def sleep_ms(self, ms):
        log.info("sleeping %d ms", ms)
        time.sleep(ms / 1000)
        return ms

    def fail(self):
        raise Oops(why="declared")

    def crash(self):
        raise RuntimeError("undeclared")


def make_processor(app_config):
    config.parse_config(app_config, {"greeting": config.Optional(config.String)})
    return Echo.Processor(Handler())
"""


def generate_thrift_service(directory: Path) -> None:
    """Compile the tiny Echo IDL into ``directory/echo_service`` and write ``echoapp.py``."""
    idl = write(directory / "echo_service.thrift", THRIFT_IDL)
    subprocess.run(
        ["thrift", "--gen", "py", "-out", str(directory), str(idl)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    write(directory / "echoapp.py", THRIFT_APP)
