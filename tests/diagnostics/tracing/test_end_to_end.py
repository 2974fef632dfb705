"""A request's spans, all the way: sidecar queue -> trace publisher -> Zipkin stand-in."""

from __future__ import annotations

import json

import pytest

from tests import vectors
from tests.diagnostics.tracing.test_publisher import TRACE_PUBLISHER
from tests.diagnostics.tracing.test_tracing_vectors import Normaliser, run_case
from tests.sidecars import Sidecar

CASES = {case.values[0]["desc"]: case.values[0] for case in vectors.cases("tracing")}


@pytest.mark.parametrize(
    "desc",
    [
        "client span under local span; failing client",
        "debug flag forces sampling and adds debug tag to every span",
        "new trace (no upstream) with sample_rate 100%",
    ],
)
def test_records_reach_zipkin_through_the_publisher(desc, queue_name, collector, tmp_path, spans):
    case = CASES[desc]
    sidecar = Sidecar(
        TRACE_PUBLISHER,
        tmp_path,
        queue_name,
        f"[trace-publisher:{queue_name}]\nzipkin_api_url = http://127.0.0.1:{collector.port}/api/v1\n"
        "metrics.namespace = trace-publisher\n",
    )
    try:
        sidecar.wait_until_ready()
        run_case(case, queue_name)
        requests = collector.wait_for(1)
    finally:
        assert sidecar.terminate() == 0, sidecar.log

    records = []
    for path, headers, body in requests:
        assert path == "/api/v1/spans"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "baseplate-trace-publisher/1.0"
        records.extend(json.loads(body))
    normaliser = Normaliser(case)
    assert [normaliser.record(record) for record in records] == case["expected_records"]
