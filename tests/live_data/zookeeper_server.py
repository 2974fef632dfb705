"""A real ZooKeeper for the live-data tests, on a spare loopback port.

Debian's ``zookeeper`` package (``scripts/test`` installs it when missing)
provides the server's jar; the test runs its standalone main class directly
with a generated ``zoo.cfg``: one JVM, listening on 127.0.0.1 only, with its
data in a temporary directory, and no admin HTTP server. It can be stopped
and started again on the same port with the same data, as after a crash and
restart of the real thing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

from tests._helpers import wait_until
from tests.server import free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
# A small heap and the quick compiler: the JVM starts in well under a second.
JAVA_OPTIONS = ("-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

# tickTime=200: the sessions the tests use (kazoo's timeout, from 0.4 to 4
# seconds) are within what the server allows, and an expired session is
# noticed quickly.
ZOO_CFG = """\
tickTime=200
dataDir={data}
clientPort={port}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,cons
"""


class ZooKeeperServer:
    """One standalone ZooKeeper on 127.0.0.1, restartable in place.

    :param directory: Where its configuration, data and log go.
    """

    def __init__(self, directory: Path) -> None:
        java = shutil.which("java")
        if java is None or not ZOOKEEPER_JAR.exists():
            raise AssertionError(
                "ZooKeeper is not installed: run scripts/test, or apt-get install zookeeper"
            )
        self.java = java
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "zoo.cfg"
        self.config_path.write_text(ZOO_CFG.format(data=directory / "data", port=self.port))

    @property
    def hosts(self) -> str:
        """The address as ``zookeeper.hosts`` takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> ZooKeeperServer:
        """Start the server and wait until it serves requests."""
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.java, *JAVA_OPTIONS, "-cp", str(ZOOKEEPER_JAR), MAIN_CLASS, "zoo.cfg"],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ZOO_LOG_DIR": str(self.directory)},
            )
        wait_until(self.answers, f"ZooKeeper answering on {self.hosts}")
        return self

    def answers(self) -> bool:
        """Whether the server serves requests now.

        ``srvr`` rather than ``ruok``: the server says it is fine a moment
        before it accepts sessions, and drops the connections made then.
        """
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "server.log").read_text(errors="replace")
            raise AssertionError(f"ZooKeeper exited with {self.process.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as probe:
                probe.sendall(b"srvr")
                return probe.recv(64).startswith(b"Zookeeper version")
        except OSError:
            return False

    def session_timeouts(self) -> dict[int, int]:
        """The timeout, in milliseconds, the server gave each connected session, by id."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as probe:
            probe.sendall(b"cons")
            answer = b""
            while chunk := probe.recv(4096):
                answer += chunk
        sessions = re.findall(r"sid=0x([0-9a-f]+),.*?\bto=(\d+)", answer.decode())
        return {int(sid, 16): int(timeout) for sid, timeout in sessions}

    def stop(self) -> None:
        """Kill the server, as if it crashed; its clients' connections are cut."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
