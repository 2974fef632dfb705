"""Baseplate's guarantees on the application's own SDK tracer provider.

The foreign-provider tests use an SDK provider that the test creates before
it imports baseplate: each scenario runs in a fresh interpreter that builds
the application's ``TracerProvider`` (a recognizable id generator, the
sampler under test, a span processor that records every span it is shown,
and ``SimpleSpanProcessor(InMemorySpanExporter())`` as the exporter, which
only takes sampled spans), installs it globally, and only then imports
baseplate and serves requests through ``Baseplate.make_server_span``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_64 = 2**64 - 1
# The top bits of the ids APP_SETUP's MarkedIds makes: 128-bit trace ids, 64-bit span ids.
APP_TRACE_PREFIX = 0xA5A5
APP_SPAN_PREFIX = 0xA11CE

APP_SETUP = """
import json, logging, sys, types

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator


class Logged(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append([record.name, record.levelname, record.getMessage()])


logged = Logged()
logging.getLogger().addHandler(logged)
logging.getLogger().setLevel(logging.DEBUG)


class MarkedIds(IdGenerator):
    '''The application's ids: 128-bit trace ids, every id marked.'''

    def __init__(self):
        self.count = 0

    def generate_span_id(self):
        self.count += 1
        return (0xA11CE << 44) | self.count

    def generate_trace_id(self):
        self.count += 1
        return (0xA5A5 << 112) | self.count


def describe(span):
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent_id": parent.span_id if parent is not None else None,
        "sampled": span.context.trace_flags.sampled,
        "attributes": dict(span.attributes or {}),
        "trace_state": span.context.trace_state.to_header(),
    }


class Recorder(SpanProcessor):
    '''The application's processor: it is shown every recorded span.'''

    def __init__(self):
        self.ended = []

    def on_end(self, span):
        self.ended.append(describe(span))


recorder = Recorder()
exported = InMemorySpanExporter()
app_provider = TracerProvider(sampler=APP_SAMPLER, id_generator=APP_IDS or MarkedIds())
app_provider.add_span_processor(recorder)
app_provider.add_span_processor(SimpleSpanProcessor(exported))
trace.set_tracer_provider(app_provider)
# An instrumentation's tracer, made before Baseplate is imported.
early_tracer = trace.get_tracer("early.instrumentation")

from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics.tracing import make_client
from baseplate.testing import RecordingObserver
from bridge import provider

baseplate = Baseplate()
# A sample rate of 0 would sample no new trace under the bridge's own sampler.
baseplate.configure_tracing(make_client("svc", exporter="none", sample_rate=0.0))
observed = RecordingObserver()
baseplate.register(observed)


def serve(name, trace_info=None, native_child=False, local_child=False):
    '''A request: a server span with a client span (and others) under it.'''
    server_span = baseplate.make_server_span(types.SimpleNamespace(), name, trace_info)
    with server_span:
        with server_span.make_child(name + ".call"):
            pass
        if native_child:
            with early_tracer.start_as_current_span(name + ".native", attributes={"own": 1}):
                pass
        if local_child:
            with server_span.make_child(name + ".local", local=True, component_name="c"):
                pass
    return {"id": server_span.id, "trace_id": server_span.trace_id}


def report(**values):
    values["recorded"] = recorder.ended
    values["exported"] = [describe(span) for span in exported.get_finished_spans()]
    values["logged"] = logged.records
    values["events"] = observed.events
    print(json.dumps(values))
"""


class Outcome:
    """What a scenario reported, with the spans looked up by name."""

    def __init__(self, reported: dict[str, Any]) -> None:
        self.values = reported
        self.recorded = {span["name"]: span for span in reported["recorded"]}
        self.exported = {span["name"]: span for span in reported["exported"]}
        self.logged = reported["logged"]
        self.events = [tuple(event) for event in reported["events"]]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def run_scenario(app_sampler: str, code: str, app_ids: str = "None", imports: str = "") -> Outcome:
    """Run ``code`` after APP_SETUP in a fresh interpreter.

    ``app_sampler`` and ``app_ids`` are expressions for the application's
    sampler and id generator (None: the marking one), evaluated after
    ``imports``; ``code`` may use APP_SETUP's names.
    """
    source = "\n".join(
        [
            "from opentelemetry.sdk.trace import sampling",
            imports,
            f"APP_SAMPLER = {app_sampler}",
            f"APP_IDS = {app_ids}",
            APP_SETUP,
            textwrap.dedent(code),
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Outcome(json.loads(result.stdout.strip().splitlines()[-1]))


# Upstream ids as a Baseplate caller sends them (X-Trace, X-Parent, X-Span).
X_TRACE = 0x7B1D3A5E9C2F4B68
X_PARENT = 0x1F2E3D4C5B6A7988
X_SPAN = 0x5C4B3A2918070605
DEFAULT_SAMPLER = "sampling.DEFAULT_ON"  # what an SDK provider uses unless told otherwise


def marked_by_app(span: dict[str, Any]) -> bool:
    """Whether the application's id generator made the span's ids."""
    return span["span_id"] >> 44 == APP_SPAN_PREFIX


def upstream(sampled: str, flags: str = "None") -> str:
    """``TraceInfo.from_upstream`` for the X_* ids, as script source."""
    return f"TraceInfo.from_upstream({X_TRACE}, {X_PARENT}, {X_SPAN}, {sampled}, {flags})"


def test_a_server_span_takes_the_upstream_ids_exactly():
    outcome = run_scenario(
        DEFAULT_SAMPLER,
        f"""
        up = serve("up", {upstream("True")})
        report(up=up, keeps=provider.state.keeps_requested_ids)
        """,
    )
    server, child = outcome.exported["up"], outcome.exported["up.call"]
    assert (server["trace_id"], server["span_id"], server["parent_id"]) == (
        X_TRACE,
        X_SPAN,
        X_PARENT,
    )
    assert outcome["up"] == {"id": X_SPAN, "trace_id": X_TRACE}
    assert server["attributes"] == {}
    assert (child["trace_id"], child["parent_id"]) == (X_TRACE, X_SPAN)
    assert child["span_id"] <= MAX_64
    assert not marked_by_app(child)
    assert outcome["keeps"] is True


def test_a_new_trace_gets_64_bit_ids_that_the_facade_reports():
    outcome = run_scenario(
        DEFAULT_SAMPLER,
        """
        new = serve("new", local_child=True)
        report(new=new)
        """,
    )
    server = outcome.exported["new"]
    assert server["parent_id"] is None
    assert 0 < server["trace_id"] <= MAX_64
    assert {"id": server["span_id"], "trace_id": server["trace_id"]} == outcome["new"]
    for name in ("new.call", "new.local"):
        span = outcome.exported[name]
        assert span["trace_id"] == server["trace_id"]
        assert span["parent_id"] == server["span_id"]
        assert span["span_id"] <= MAX_64
        assert not marked_by_app(span)


@pytest.mark.parametrize(
    ("app_sampler", "parent_based"),
    [
        ("sampling.ALWAYS_OFF", False),
        ("sampling.TraceIdRatioBased(0)", False),
        ("sampling.DEFAULT_OFF", True),
    ],
)
def test_the_debug_flag_samples_whatever_the_app_sampler_says(app_sampler, parent_based):
    outcome = run_scenario(
        app_sampler,
        f"""
        serve("debug", {upstream("False", "1")}, native_child=True, local_child=True)
        serve("plain", {upstream("False")})
        report()
        """,
    )
    baseplates = ["debug", "debug.call", "debug.local"]
    assert sorted(outcome.exported) == sorted(baseplates + ["debug.native"] * parent_based)
    debug = outcome.exported["debug"]
    assert (debug["trace_id"], debug["span_id"], debug["sampled"]) == (X_TRACE, X_SPAN, True)
    assert debug["attributes"]["baseplate.debug"] is True
    # A native span is the application's sampler's to decide; it is recorded.
    assert outcome.recorded["debug.native"]["sampled"] is parent_based
    # Without the flag, the request is recorded but not exported.
    assert outcome.recorded["plain"]["sampled"] is False


@pytest.mark.parametrize("app_sampler", ["sampling.ALWAYS_OFF", "sampling.TraceIdRatioBased(0)"])
def test_baseplates_spans_carry_the_upstream_decision_whatever_the_app_sampler_says(app_sampler):
    outcome = run_scenario(
        app_sampler,
        f"""
        serve("sampled", {upstream("True")}, local_child=True)
        report()
        """,
    )
    assert sorted(outcome.exported) == ["sampled", "sampled.call", "sampled.local"]
    assert outcome.exported["sampled.call"]["parent_id"] == X_SPAN


def test_an_unsampled_request_is_recorded_for_processors_but_not_exported():
    outcome = run_scenario(
        DEFAULT_SAMPLER,
        f"""
        serve("unsampled", {upstream("False")}, native_child=True, local_child=True)
        report()
        """,
    )
    assert outcome.exported == {}
    names = ["unsampled", "unsampled.call", "unsampled.native", "unsampled.local"]
    assert sorted(outcome.recorded) == sorted(names)
    assert all(outcome.recorded[name]["sampled"] is False for name in names)
    server = outcome.recorded["unsampled"]
    assert (server["trace_id"], server["span_id"], server["parent_id"]) == (
        X_TRACE,
        X_SPAN,
        X_PARENT,
    )
    # Recorded spans keep their attributes.
    assert server["attributes"] == {}
    assert outcome.recorded["unsampled.local"]["attributes"] == {"lc": "c"}
    # The native span, from a tracer made before Baseplate was imported, was adopted.
    assert ("unsampled", "on_child_span_created", "unsampled.native") in outcome.events
    assert ("unsampled.native", "on_finish", None) in outcome.events


def test_a_dropping_app_sampler_records_baseplates_requests_only():
    outcome = run_scenario(
        "sampling.ALWAYS_OFF",
        """
        serve("new", native_child=True)
        with trace.get_tracer("app").start_as_current_span("outside"):
            with trace.get_tracer("app").start_as_current_span("outside.child"):
                pass
        report()
        """,
    )
    assert outcome.exported == {}
    assert sorted(outcome.recorded) == ["new", "new.call", "new.native"]
    assert all(span["sampled"] is False for span in outcome.recorded.values())
    assert ("new", "on_child_span_created", "new.native") in outcome.events


def test_a_dropped_span_keeps_the_app_samplers_attributes_and_trace_state():
    outcome = run_scenario(
        "Tagging()",
        """
        serve("new", native_child=True, local_child=True)
        report()
        """,
        imports="""
from opentelemetry.trace.span import TraceState

class Tagging(sampling.Sampler):
    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None):
        return sampling.SamplingResult(
            sampling.Decision.DROP, {"app.tag": name}, TraceState([("app", "kept")])
        )

    def get_description(self):
        return "Tagging"
""",
    )
    assert outcome.exported == {}
    server, native = outcome.recorded["new"], outcome.recorded["new.native"]
    assert (server["sampled"], native["sampled"]) == (False, False)
    assert server["attributes"] == {"app.tag": "new"}
    assert native["attributes"] == {"own": 1, "app.tag": "new.native"}
    assert server["trace_state"] == native["trace_state"] == "app=kept"
    # Baseplate's own child carries its parent's decision and trace state.
    local = outcome.recorded["new.local"]
    assert (local["sampled"], local["attributes"]) == (False, {"lc": "c"})
    assert local["trace_state"] == "app=kept"


@pytest.mark.parametrize(
    ("app_sampler", "sampled"),
    [("sampling.DEFAULT_ON", True), ("sampling.ParentBased(sampling.TraceIdRatioBased(0))", False)],
)
def test_an_upstream_without_a_decision_is_decided_as_a_new_trace(app_sampler, sampled):
    # The tracing client's sample rate (0) is not applied: the app's sampler decides.
    outcome = run_scenario(
        app_sampler,
        f"""
        serve("undecided", {upstream("None")})
        serve("new")
        report()
        """,
    )
    server = outcome.recorded["undecided"]
    assert (server["trace_id"], server["span_id"], server["sampled"]) == (X_TRACE, X_SPAN, sampled)
    assert outcome.recorded["undecided.call"]["sampled"] is sampled
    assert outcome.recorded["new"]["sampled"] is sampled
    assert sorted(outcome.exported) == (
        ["new", "new.call", "undecided", "undecided.call"] if sampled else []
    )


def test_native_spans_keep_the_app_id_generator():
    outcome = run_scenario(
        DEFAULT_SAMPLER,
        f"""
        serve("up", {upstream("True")}, native_child=True)
        with trace.get_tracer("app").start_as_current_span("outside"):
            with early_tracer.start_as_current_span("outside.child"):
                pass
        report()
        """,
    )
    outside, child = outcome.exported["outside"], outcome.exported["outside.child"]
    assert outside["trace_id"] >> 112 == APP_TRACE_PREFIX
    assert child["trace_id"] == outside["trace_id"]
    assert marked_by_app(outside)
    assert marked_by_app(child)
    native = outcome.exported["up.native"]
    assert marked_by_app(native)
    assert (native["trace_id"], native["parent_id"]) == (X_TRACE, X_SPAN)


def test_wrapping_is_logged_once_at_info_level_and_is_idempotent():
    outcome = run_scenario(
        DEFAULT_SAMPLER,
        """
        from bridge.app_provider import wrap_provider

        serve("first")
        sampler, ids = app_provider.sampler, app_provider.id_generator
        again = wrap_provider(app_provider)
        report(
            again=again,
            same=app_provider.sampler is sampler and app_provider.id_generator is ids,
            description=sampler.get_description(),
            wrapped_app_sampler=sampler.app_sampler is sampling.DEFAULT_ON,
            wrapped_app_ids=type(ids.app_generator).__name__,
            baseplate_tracer=provider.get_tracer().sampler is sampler
            and provider.get_tracer().id_generator is ids,
            early_tracer=early_tracer.sampler is sampler and early_tracer.id_generator is ids,
            keeps=provider.state.keeps_requested_ids,
            root_sampler=provider.root_sampler(),
        )
        """,
    )
    assert outcome["again"] == []
    assert outcome["same"] is True
    assert outcome["description"] == (
        "RequestAwareSampler{ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,"
        "remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,"
        "localParentNotSampled:AlwaysOffSampler}}"
    )
    assert outcome["wrapped_app_sampler"] is True
    assert outcome["wrapped_app_ids"] == "MarkedIds"
    assert outcome["baseplate_tracer"] is True
    assert outcome["early_tracer"] is True
    assert outcome["keeps"] is True
    assert outcome["root_sampler"] is None
    from_bridge = [record for record in outcome.logged if record[0].startswith("bridge")]
    assert [level for _, level, _ in from_bridge] == ["INFO"]
    assert "wrapped its id generator MarkedIds and sampler ParentBased{" in from_bridge[0][2]


def test_the_bridges_own_id_generator_and_sampler_are_left_as_they_are():
    outcome = run_scenario(
        "BaseplateSampler(1.0)",
        f"""
        up = serve("up", {upstream("True")})
        report(
            sampler=type(app_provider.sampler).__name__,
            ids=type(app_provider.id_generator).__name__,
            keeps=provider.state.keeps_requested_ids,
        )
        """,
        app_ids="BaseplateIdGenerator()",
        imports="from bridge.ids import BaseplateIdGenerator\n"
        "from bridge.sampling import BaseplateSampler",
    )
    assert (outcome["sampler"], outcome["ids"]) == ("BaseplateSampler", "BaseplateIdGenerator")
    assert outcome["keeps"] is True
    assert not [record for record in outcome.logged if record[0].startswith("bridge")]
    assert outcome.exported["up"]["span_id"] == X_SPAN


def test_only_what_is_not_the_bridges_is_wrapped():
    outcome = run_scenario(
        "sampling.ALWAYS_OFF",
        """
        serve("new")
        report(
            sampler=type(app_provider.sampler).__name__,
            ids=type(app_provider.id_generator).__name__,
        )
        """,
        app_ids="BaseplateIdGenerator()",
        imports="from bridge.ids import BaseplateIdGenerator",
    )
    assert (outcome["sampler"], outcome["ids"]) == ("RequestAwareSampler", "BaseplateIdGenerator")
    assert outcome.recorded["new"]["sampled"] is False
    from_bridge = [record for record in outcome.logged if record[0].startswith("bridge")]
    assert len(from_bridge) == 1
    assert "wrapped its sampler AlwaysOffSampler so that" in from_bridge[0][2]
