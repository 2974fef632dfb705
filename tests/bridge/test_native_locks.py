"""Native span locks under gevent's patches: spans get them, and still work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bridge.native_locks import use_native_span_locks


def _run(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_gevent_patches_nothing_changes():
    import opentelemetry.sdk.trace as sdk_trace

    before = sdk_trace.threading
    assert use_native_span_locks() is False
    assert sdk_trace.threading is before


def test_patched_process_gives_spans_native_locks_and_keeps_the_rest_patched():
    output = _run(
        """
        from gevent import monkey
        monkey.patch_all()
        import threading
        from opentelemetry.sdk.trace import TracerProvider
        from bridge.native_locks import use_native_span_locks

        native_type = type(monkey.get_original("_thread", "allocate_lock")())
        tracer = TracerProvider().get_tracer("test")
        before = tracer.start_span("before")
        print(type(before._lock) is native_type)
        print(use_native_span_locks())
        span = tracer.start_span("after")
        span.set_attribute("key", "value")
        span.add_event("event")
        span.end()
        print(type(span._lock) is native_type, type(span._attributes._lock) is native_type)
        print(span.attributes["key"], len(span.events))
        import opentelemetry.sdk.trace as sdk_trace
        print(sdk_trace.threading.Thread is threading.Thread)
        """
    )
    assert output.splitlines() == ["False", "True", "True True", "value 1", "True"]


def test_concurrent_greenlets_share_a_span_without_blocking():
    output = _run(
        """
        from gevent import monkey
        monkey.patch_all()
        import gevent
        from opentelemetry.sdk.trace import TracerProvider
        from bridge.native_locks import use_native_span_locks

        use_native_span_locks()
        span = TracerProvider().get_tracer("test").start_span("shared")

        def tag(worker):
            for n in range(200):
                span.set_attribute(f"w{worker}.{n % 10}", n)
                gevent.sleep(0)

        gevent.joinall([gevent.spawn(tag, w) for w in range(20)], timeout=30, raise_error=True)
        span.end()
        print(len(span.attributes))
        """
    )
    assert output == "128"  # the SDK's default attribute limit: every greenlet got through
