import logging
import threading
from types import SimpleNamespace

from opentelemetry import trace

from baseplate.core import Baseplate, TraceInfo


def make_baseplate():
    baseplate = Baseplate()
    baseplate.configure_logging()
    return baseplate


def test_thread_is_named_after_the_trace_during_the_request(spans):
    baseplate = make_baseplate()
    before = threading.current_thread().name
    server = baseplate.make_server_span(
        SimpleNamespace(), "handler", TraceInfo.from_upstream(4242, 1, 2, True, None)
    )
    with server:
        assert threading.current_thread().name == "4242"
    assert threading.current_thread().name == before


def test_log_records_carry_trace_and_span_ids(spans, caplog):
    baseplate = make_baseplate()
    log = logging.getLogger("app")
    server = baseplate.make_server_span(
        SimpleNamespace(), "handler", TraceInfo.from_upstream(77, 1, 88, True, None)
    )
    with caplog.at_level(logging.INFO, logger="app"):
        log.info("outside")
        with server:
            log.info("in the server span")
            with server.make_child("call") as child:
                log.info("in a child")
            with trace.get_tracer("lib").start_as_current_span("native") as native:
                log.info("in a native span")

    ids = [(r.getMessage(), r.trace_id, r.span_id) for r in caplog.records]
    assert ids == [
        ("outside", "", ""),
        ("in the server span", "77", "88"),
        ("in a child", "77", str(child.id)),
        ("in a native span", "77", str(native.get_span_context().span_id)),
    ]


def test_record_factory_is_installed_once(spans):
    make_baseplate()
    factory = logging.getLogRecordFactory()
    make_baseplate()
    assert logging.getLogRecordFactory() is factory
