"""Every case of the metrics reference vectors, against a real UDP socket."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from baseplate import metrics_client_from_config
from baseplate.core import Baseplate
from tests import vectors


class CaseRunner:
    def __init__(self, client: Any, clock: Any) -> None:
        self.client = client
        self.clock = clock
        self.batch: Any = None
        self.timers: dict[tuple[str, str], Any] = {}
        self.spans: dict[str, Any] = {}

    def run(self, op: dict[str, Any]) -> None:
        getattr(self, "op_" + op["op"])(op)

    def op_clock(self, op: dict[str, Any]) -> None:
        self.clock.now = op["t"]

    def op_batch_begin(self, op: dict[str, Any]) -> None:
        self.batch = self.client.batch()

    def op_batch_flush(self, op: dict[str, Any]) -> None:
        self.batch.flush()

    def _target(self, on: str) -> Any:
        if on == "client":
            return self.client
        if on == "batch":
            return self.batch
        return self.spans["server"].context.metrics

    def _metric(self, op: dict[str, Any]) -> Any:
        if op["op"] != "timer":
            return getattr(self._target(op["on"]), op["op"])(op["name"])
        key = (op["on"], op["name"])
        if key not in self.timers:
            self.timers[key] = self._target(op["on"]).timer(op["name"])
        return self.timers[key]

    def _call_metric(self, op: dict[str, Any]) -> None:
        call = getattr(self._metric(op), op["call"])
        if op.get("expect_error"):
            with pytest.raises(Exception):  # noqa: B017 - the case says "any exception"
                call(*op.get("args", []), **op.get("kwargs", {}))
        else:
            call(*op.get("args", []), **op.get("kwargs", {}))

    op_counter = op_gauge = op_histogram = op_timer = _call_metric

    def op_server_span(self, op: dict[str, Any]) -> None:
        baseplate = Baseplate()
        baseplate.configure_metrics(self.client)
        span = baseplate.make_server_span(_Context(), op["name"])
        span.start()
        self.spans["server"] = span

    def op_child(self, op: dict[str, Any]) -> None:
        parent = self.spans[op.get("parent", "server")]
        if op.get("local"):
            child = parent.make_child(op["name"], local=True, component_name=op["component"])
        else:
            child = parent.make_child(op["name"])
        child.start()
        self.spans[op["label"]] = child

    def op_log_error_object(self, op: dict[str, Any]) -> None:
        exc_class = type(op["exc_class"], (Exception,), {})
        self.spans[op["label"]].log("error.object", exc_class())

    def op_finish(self, op: dict[str, Any]) -> None:
        span = self.spans[op["label"]]
        if not op.get("error"):
            span.finish()
            return
        try:
            raise ValueError("vector failure")
        except ValueError:
            span.finish(exc_info=sys.exc_info())


class _Context:
    pass


@pytest.mark.parametrize("case", vectors.cases("metrics"))
def test_metrics_vector(case, statsd, clock):
    endpoint = case.get("endpoint", statsd.endpoint)
    client = metrics_client_from_config(
        {"metrics.namespace": case["namespace"], "metrics.endpoint": endpoint}
    )
    runner = CaseRunner(client, clock)
    for op in case["ops"]:
        runner.run(op)

    received = [datagram.decode("ascii") for datagram in statsd.received() if datagram]
    assert received == case["expected_packets"]
