"""What the benchmarks run beside the original 0.30.9 share.

Such a benchmark times a worker script, which uses only the documented API,
in a fresh interpreter: this project's, and, given ``--original PYTHON``,
the original Baseplate's, installed in a venv of its own. The
implementations take turns, round by round, and medians are reported:
machines are noisy, and turns spread a slow moment over both. Here, once for
all of them: which interpreters run, how a worker is run and its figures
read, the medians, and the command line.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How the report names each implementation.
THIS = "this project"
ORIGINAL = "original 0.30.9"

ROOT = Path(__file__).resolve().parent.parent


def interpreters(original: str | None) -> dict[str, str]:
    """The interpreter of each implementation to time, this project's first."""
    pythons = {THIS: sys.executable}
    if original:
        pythons[ORIGINAL] = original
    return pythons


def run_worker(python: str, worker: str, *args: str, label: str = "") -> dict[str, Any]:
    """Run the script ``worker`` under ``python`` with ``args``; its last line of output, as JSON.

    This project's interpreter runs it from the repository root, so that it
    imports this tree; any other from ``/``, so that it imports what its own
    venv installed and never this tree.

    :raises RuntimeError: The worker failed; the message names the
        interpreter (and ``label``) and gives the last line of its stderr.
    """
    done = subprocess.run(
        [python, "-c", worker, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT if python == sys.executable else "/",
    )
    if done.returncode != 0:
        where = f"{python} {label}" if label else python
        raise RuntimeError(f"{where}: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Medians:
    """A figure of each round, kept by case and implementation; read back as medians."""

    def __init__(self) -> None:
        self._figures: dict[tuple[str, str], list[float]] = collections.defaultdict(list)

    def add(self, case: str, implementation: str, figure: float) -> None:
        self._figures[case, implementation].append(figure)

    def median(self, case: str, implementation: str = THIS) -> float:
        return statistics.median(self._figures[case, implementation])

    def against_original(self, case: str) -> float:
        """This project's median over the original's: above 1 when this project is faster."""
        return self.median(case) / self.median(case, ORIGINAL)


def command_line(main: Callable[..., None], description: str, quick: str) -> None:
    """Run ``main`` with the ``--quick`` and ``--original PYTHON`` of the command line.

    :param description: What ``--help`` says the benchmark does.
    :param quick: What ``--help`` says ``--quick`` makes fewer of.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"fewer {quick} and rounds")
    parser.add_argument("--original", metavar="PYTHON", help="the original 0.30.9's interpreter")
    arguments = parser.parse_args()
    main(quick=arguments.quick, original=arguments.original)
