"""The process's one tracer provider: whose it is, when it is made, and forks.

The provider is global, process-wide state that OpenTelemetry lets be set only
once, so each scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests._helpers import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

REPOSITORY = Path(__file__).resolve().parents[2]
WARNING_TEXT = "using the application's own TracerProvider"

# Shared by every child interpreter: a Baseplate "request" that makes one
# server span with a client span and a local span under it.
PRELUDE = """
import json, logging, os, sys, types
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")

def handle_request(baseplate, name="req"):
    context = types.SimpleNamespace()
    with baseplate.make_server_span(context, name) as server_span:
        with server_span.make_child("downstream.call"):
            pass
        with server_span.make_child("work", local=True, component_name="c"):
            pass
    return server_span

def report(**values):
    print(json.dumps(values))
"""


def reported_by(code: str) -> dict:
    """Run ``code`` in a fresh interpreter and return what it ``report()``-ed."""
    result = run_python("-c", PRELUDE + textwrap.dedent(code), cwd=REPOSITORY)
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    reported = json.loads(lines[-1])
    reported["stderr"] = result.stderr
    return reported


def test_application_provider_is_used_and_keeps_baseplates_ids():
    reported = reported_by(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        app_exporter = InMemorySpanExporter()
        app_provider = TracerProvider()
        app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(app_provider)

        from baseplate.core import Baseplate
        from bridge import provider

        baseplate = Baseplate()
        server_spans = [handle_request(baseplate, f"req{i}") for i in range(25)]
        # Spans the application makes through its own tracer are still adopted.
        from baseplate.testing import RecordingObserver

        recorder = RecordingObserver()
        baseplate.register(recorder)
        with baseplate.make_server_span(types.SimpleNamespace(), "adopting"):
            with trace.get_tracer("app").start_as_current_span("app.native"):
                pass

        finished = app_exporter.get_finished_spans()
        by_id = {span.context.span_id: span for span in finished}
        report(
            same_provider=provider.get_tracer_provider() is app_provider,
            global_is_app=trace.get_tracer_provider() is app_provider,
            keeps_requested_ids=provider.state.keeps_requested_ids,
            names=sorted({span.name for span in finished}),
            count=len(finished),
            adopted=("adopting", "on_child_span_created", "app.native") in recorder.events
            and ("app.native", "on_finish", None) in recorder.events,
            server_spans_exported=all(span.id in by_id for span in server_spans),
            ids_match=all(
                by_id[span.id].context.trace_id & (2**64 - 1) == span.trace_id
                for span in server_spans
            ),
        )
        """
    )
    assert reported["same_provider"] is True
    assert reported["global_is_app"] is True
    # Its id generator is wrapped: Baseplate's spans keep the ids they name.
    assert reported["keeps_requested_ids"] is True
    assert reported["names"] == sorted(
        ["adopting", "app.native", "downstream.call", "work", *(f"req{i}" for i in range(25))]
    )
    assert reported["count"] == 25 * 3 + 2
    assert reported["adopted"] is True
    assert reported["server_spans_exported"] is True
    assert reported["ids_match"] is True
    assert WARNING_TEXT not in reported["stderr"]  # nothing is lost: no warning


def test_no_warning_when_the_application_provider_is_baseplates_kind():
    reported = reported_by(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        from bridge.ids import BaseplateIdGenerator
        from bridge.sampling import BaseplateSampler

        app_provider = TracerProvider(
            sampler=BaseplateSampler(), id_generator=BaseplateIdGenerator()
        )
        trace.set_tracer_provider(app_provider)

        from baseplate.core import Baseplate
        from bridge import provider

        handle_request(Baseplate())
        report(
            same_provider=provider.get_tracer_provider() is app_provider,
            keeps_requested_ids=provider.state.keeps_requested_ids,
        )
        """
    )
    assert reported["same_provider"] is True
    assert reported["keeps_requested_ids"] is True
    assert WARNING_TEXT not in reported["stderr"]


def test_bridge_installs_the_one_provider():
    reported = reported_by(
        """
        import gc

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        from baseplate.core import Baseplate
        from bridge import provider
        from bridge.ids import BaseplateIdGenerator
        from bridge.sampling import BaseplateSampler

        baseplate = Baseplate()
        handle_request(baseplate)
        first = trace.get_tracer_provider()
        for i in range(20):
            handle_request(baseplate, f"req{i}")
        providers = [obj for obj in gc.get_objects() if isinstance(obj, TracerProvider)]
        report(
            is_bridge_provider=first is provider.get_tracer_provider(),
            is_sdk=isinstance(first, TracerProvider),
            id_generator=type(first.id_generator).__name__,
            baseplate_ids=isinstance(first.id_generator, BaseplateIdGenerator),
            baseplate_sampler=isinstance(first.sampler, BaseplateSampler),
            still_the_same=trace.get_tracer_provider() is first,
            provider_count=len(providers),
            keeps_requested_ids=provider.state.keeps_requested_ids,
        )
        """
    )
    assert reported["is_bridge_provider"] is True
    assert reported["is_sdk"] is True
    assert reported["id_generator"] == "BaseplateIdGenerator"
    assert reported["baseplate_ids"] is True
    assert reported["baseplate_sampler"] is True
    assert reported["still_the_same"] is True
    assert reported["provider_count"] == 1
    assert reported["keeps_requested_ids"] is True
    assert WARNING_TEXT not in reported["stderr"]


def test_nothing_is_created_at_import_time():
    reported = reported_by(
        """
        import threading

        import baseplate.core
        import baseplate.diagnostics.metrics
        import baseplate.testing
        import bridge.provider
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        report(
            provider_is_none=bridge.provider.state.provider is None,
            tracer_is_none=bridge.provider.state.tracer is None,
            global_set=isinstance(trace._TRACER_PROVIDER, TracerProvider),
            threads=sorted(thread.name for thread in threading.enumerate()),
        )
        """
    )
    assert reported["provider_is_none"] is True
    assert reported["tracer_is_none"] is True
    assert reported["global_set"] is False
    assert reported["threads"] == ["MainThread"]


# -- fork safety ---------------------------------------------------------------
#
# The child reports through a file and its exit status; the parent waits for it
# and reports both.

FORK_CHILD = """
import time

def child_work(path, baseplate, setup=None):
    try:
        if setup is not None:
            setup()
        handle_request(baseplate, "child_request")
        # The batch processor's worker thread must be alive in the child: it
        # exports on its schedule, without being flushed.
        deadline = time.monotonic() + 20
        while len(exporter.get_finished_spans()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        by_worker = sorted(span.name for span in exporter.get_finished_spans())
        flushed = provider.get_tracer_provider().force_flush(10000)
        names = sorted(span.name for span in exporter.get_finished_spans())
        with open(path, "w") as result:
            json.dump({"flushed": flushed, "names": names, "by_worker": by_worker}, result)
        status = 0 if "child_request" in names else 3
    except BaseException:
        import traceback
        traceback.print_exc()
        status = 2
    sys.stderr.flush()
    os._exit(status)

def wait_for(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""


def test_batch_processor_exports_in_a_forked_child(tmp_path):
    result_path = tmp_path / "child.json"
    reported = reported_by(
        FORK_CHILD
        + f"""
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate.core import Baseplate
from bridge import provider

baseplate = Baseplate()
handle_request(baseplate, "before_fork")
before = provider.get_tracer_provider()
exporter = InMemorySpanExporter()
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))

pid = os.fork()
if pid == 0:
    child_work({str(result_path)!r}, baseplate)

exit_code = wait_for(pid)
handle_request(baseplate, "parent_after_fork")
provider.get_tracer_provider().force_flush(10000)
# What the child exported stayed in the child.
report(
    exit_code=exit_code,
    parent_names=sorted(span.name for span in exporter.get_finished_spans()),
    same_provider=provider.get_tracer_provider() is before,
)
"""
    )
    assert reported["exit_code"] == 0, reported["stderr"]
    child = json.loads(result_path.read_text())
    assert child["flushed"] is True
    assert child["by_worker"] == ["child_request", "downstream.call", "work"]
    assert child["names"] == ["child_request", "downstream.call", "work"]
    assert reported["parent_names"] == ["downstream.call", "parent_after_fork", "work"]
    assert reported["same_provider"] is True


def test_provider_made_lazily_in_a_forked_child(tmp_path):
    result_path = tmp_path / "child.json"
    reported = reported_by(
        FORK_CHILD
        + f"""
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baseplate.core import Baseplate
from bridge import provider

baseplate = Baseplate()
exporter = InMemorySpanExporter()

def install_exporter():
    assert provider.state.provider is None, "the child must build its own provider"
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))

pid = os.fork()
if pid == 0:
    child_work({str(result_path)!r}, baseplate, install_exporter)

exit_code = wait_for(pid)
report(exit_code=exit_code, parent_provider_is_none=provider.state.provider is None)
"""
    )
    assert reported["exit_code"] == 0, reported["stderr"]
    child = json.loads(result_path.read_text())
    assert child["flushed"] is True
    assert child["by_worker"] == ["child_request", "downstream.call", "work"]
    assert child["names"] == ["child_request", "downstream.call", "work"]
    # The child's provider was made in the child: the parent never made one.
    assert reported["parent_provider_is_none"] is True
