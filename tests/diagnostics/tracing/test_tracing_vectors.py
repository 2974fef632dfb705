"""Every case of the tracing reference vectors: Zipkin records on a real POSIX queue."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from types import SimpleNamespace
from typing import Any

import posix_ipc
import pytest

from baseplate import tracing_client_from_config
from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics.tracing import TracingClient
from tests import vectors

TRACE_INFO_IDS = ("trace_id", "parent_id", "span_id")


def read_records(name: str) -> list[dict[str, Any]]:
    queue = posix_ipc.MessageQueue(f"/traces-{name}")
    records = []
    try:
        while True:
            message, _ = queue.receive(timeout=0)
            records.append(json.loads(message))
    except posix_ipc.BusyError:
        return records
    finally:
        queue.close()


class Normaliser:
    """Replaces the values a case cannot predict, as the vectors' format describes."""

    def __init__(self, case: dict[str, Any]) -> None:
        known = set()
        for op in case["ops"]:
            if op["op"] == "server_span" and op["trace_info"]:
                known.update(op["trace_info"][key] for key in TRACE_INFO_IDS)
        self.known = known
        self.placeholders: dict[int, str] = {}

    def id(self, value: Any) -> Any:
        assert isinstance(value, int) and not isinstance(value, bool)
        if value == 0 or value in self.known:
            return value
        if value not in self.placeholders:
            self.placeholders[value] = f"<id{len(self.placeholders) + 1}>"
        return self.placeholders[value]

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        start, duration = record["timestamp"], record["duration"]
        assert isinstance(start, int) and start > 1_000_000_000_000_000  # epoch µs
        assert isinstance(duration, int) and duration >= 0
        normalised = dict(record)
        for key in ("traceId", "id", "parentId"):
            normalised[key] = self.id(record[key])
        normalised["timestamp"], normalised["duration"] = "<ts>", "<dur>"
        normalised["annotations"] = [
            {**a, "timestamp": self.moment(a["timestamp"], start, duration)}
            for a in record["annotations"]
        ]
        for items in (normalised["annotations"], record["binaryAnnotations"]):
            for item in items:
                assert isinstance(item["endpoint"]["ipv4"], str)
                item["endpoint"] = {**item["endpoint"], "ipv4": "<ipv4>"}
        return normalised

    @staticmethod
    def moment(timestamp: int, start: int, duration: int) -> str:
        if timestamp == start:
            return "<start>"
        assert timestamp == start + duration
        return "<end>"


def run_case(case: dict[str, Any], queue_name: str) -> TracingClient:
    client = tracing_client_from_config(
        {
            "tracing.service_name": case["service_name"],
            "tracing.queue_name": queue_name,
            "tracing.sample_rate": case.get("sample_rate") or "10%",
        }
    )
    baseplate = Baseplate()
    baseplate.configure_tracing(client)
    spans: dict[str, Any] = {}
    for op in case["ops"]:
        if op["op"] == "server_span":
            info = op["trace_info"]
            trace_info = None if info is None else TraceInfo.from_upstream(**info)
            spans["server"] = baseplate.make_server_span(SimpleNamespace(), op["name"], trace_info)
            spans["server"].start()
        elif op["op"] == "child":
            parent = spans[op.get("parent", "server")]
            if op.get("local"):
                child = parent.make_child(op["name"], local=True, component_name=op["component"])
            else:
                child = parent.make_child(op["name"])
            child.start()
            spans[op["label"]] = child
        elif op["op"] == "tag":
            spans[op["label"]].set_tag(op["key"], op["value"])
        elif op["op"] == "finish":
            if op.get("error"):
                try:
                    raise ValueError("vector failure")
                except ValueError:
                    spans[op["label"]].finish(exc_info=sys.exc_info())
            else:
                spans[op["label"]].finish()
        else:
            raise AssertionError(f"unknown op {op['op']}")
    assert client.flush(timeout_seconds=10)
    return client


@pytest.mark.parametrize("case", vectors.cases("tracing"))
def test_tracing_vector(case, queue_name, spans):
    run_case(case, queue_name)
    normaliser = Normaliser(case)
    records = [normaliser.record(record) for record in read_records(queue_name)]
    assert records == case["expected_records"]


def renamed(records: list[dict[str, Any]], service_name: str) -> list[dict[str, Any]]:
    """The expected records of a case, with every endpoint naming ``service_name``."""
    text = json.dumps(records)
    for record in records:
        for item in record["annotations"] + record["binaryAnnotations"]:
            old = json.dumps(item["endpoint"]["serviceName"])
            text = text.replace(f'"serviceName": {old}', f'"serviceName": "{service_name}"')
    result: list[dict[str, Any]] = json.loads(text)
    return result


def test_all_vectors_in_one_process(spans, caplog):
    """As an application's test suite runs: one Baseplate per case, each with
    its own service name and sample rate, on the one tracer provider of the
    process. Every queue is read only after all cases ran, so a span that
    reached another case's queue would show up there."""
    all_cases = vectors.load("tracing")["cases"]
    names = [f"bp-seq-{uuid.uuid4().hex[:8]}-{index}" for index in range(len(all_cases))]
    queues = [
        posix_ipc.MessageQueue(
            f"/traces-{name}", flags=posix_ipc.O_CREX, max_messages=4, max_message_size=8192
        )
        for name in names
    ]
    try:
        clients = [
            run_case({**case, "service_name": f"service-{index}"}, name)
            for index, (case, name) in enumerate(zip(all_cases, names, strict=True))
        ]
        for client in clients:
            assert client.flush(timeout_seconds=10)
        for index, (case, name) in enumerate(zip(all_cases, names, strict=True)):
            normaliser = Normaliser(case)
            records = [normaliser.record(record) for record in read_records(name)]
            expected = renamed(case["expected_records"], f"service-{index}")
            assert records == expected, case["desc"]
    finally:
        for queue in queues:
            queue.close()
            queue.unlink()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
