"""What the tests of the sidecars (the trace publisher and the event publisher) share.

Both suites run a publisher in a thread, or a sidecar in a subprocess, and
read what it counted from a statsd capture; the parts are written once here
so that the two sidecars are driven, and their metrics read, alike.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from baseplate._sidecar.loop import Publisher
from baseplate.testing import StatsdCapture
from tests._helpers import wait_until

REPO = Path(__file__).resolve().parents[1]

#: The longest a test waits for a publisher or a sidecar to stop.
WAIT_SECONDS = 20.0


def metric_lines(statsd: StatsdCapture) -> list[str]:
    """The metric lines the capture received since it was last read."""
    return [line.decode() for datagram in statsd.received() for line in datagram.split(b"\n")]


class MetricsLog:
    """Everything the statsd capture received, accumulated across reads."""

    def __init__(self, statsd: StatsdCapture) -> None:
        self.statsd = statsd
        self.lines: list[str] = []

    def read(self) -> list[str]:
        self.lines.extend(metric_lines(self.statsd))
        return self.lines

    def counters(self) -> dict[str, float]:
        """Each counter's total so far."""
        totals: dict[str, float] = collections.defaultdict(float)
        for line in self.read():
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if kind == "c":
                totals[name] += float(value)
        return dict(totals)

    def count(self, name: str) -> float:
        return self.counters().get(name, 0)

    def dropped(self) -> dict[str, float]:
        """The ``dropped.<reason>`` counters so far: empty when nothing was given up on."""
        return {name: n for name, n in self.counters().items() if ".dropped." in name}

    def timers(self) -> list[str]:
        """The name of every timer sent so far, once per timing."""
        return [line.partition(":")[0] for line in self.read() if line.endswith("|ms")]


class RunningPublisher:
    """A publisher's ``run()`` in a thread, until :meth:`stop`."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.publisher.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        """Stop the publisher; it must end in time, and without an error."""
        self.publisher.stop()
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive(), "the publisher did not stop"
        assert self.error is None


class Sidecar:
    """``python -m MODULE --queue-name NAME [extra] CONFIG`` in a subprocess.

    The INI text ``ini`` is written to a file of its own; the sidecar logs
    to a file, read back by :attr:`log`. ``env`` is added to this process's
    environment.
    """

    def __init__(
        self,
        module: str,
        tmp_path: Path,
        queue_name: str,
        ini: str,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        config_file = tmp_path / f"{uuid.uuid4().hex}.ini"
        config_file.write_text(ini)
        self.stderr_path = tmp_path / f"{uuid.uuid4().hex}.log"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    module,
                    "--queue-name",
                    queue_name,
                    *extra,
                    str(config_file),
                ],
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def log(self) -> str:
        return self.stderr_path.read_text()

    def wait_until_ready(self) -> None:
        """Wait until it publishes (its queue is open); it must not have exited."""
        wait_until(lambda: "publishing " in self.log or self.process.poll() is not None)
        assert self.process.poll() is None, self.log

    def terminate(self) -> int:
        """SIGTERM, then its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        """Its exit status, once it exits; killed if it does not in time."""
        try:
            return self.process.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """Kill it if it still runs: for the end of a test that failed half-way."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
