"""The original 0.30 Pyramid integration's names: trust handlers, events,
``request.start_server_span``, ``app.baseplate``, pshell and PasteDeploy."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webob  # noqa: F401

import sys
from pathlib import Path
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.scripting import prepare

from baseplate.core import Baseplate, ServerSpan, TraceInfo
from baseplate.integration.pyramid import (
    TRACE_HEADER_NAMES,
    BaseplateConfigurator,
    BaseplateEvent,
    HeaderTrustHandler,
    ServerSpanInitialized,
    StaticTrustHandler,
    paste_make_app,
    pshell_setup,
)
from baseplate.integration.thrift import TRACE_HEADER_NAMES as THRIFT_TRACE_HEADER_NAMES
from baseplate.server import make_app
from baseplate.server._config import ConfigFileError

UPSTREAM = {"X-Trace": "1234", "X-Parent": "2345", "X-Span": "3456", "X-Sampled": "1"}


class TrustInternalCallers(HeaderTrustHandler):
    """Trusts the trace headers of callers that say they are internal; never edge context."""

    def should_trust_trace_headers(self, request: Any) -> bool:
        return request.headers.get("X-Internal") == "yes"

    def should_trust_edge_context_payload(self, request: Any) -> bool:
        return False


def app_with(configurator: BaseplateConfigurator) -> webtest.TestApp:
    config = Configurator()
    config.include(configurator.includeme)
    config.add_route("example", "/example")

    def view(request: Any) -> dict[str, Any]:
        raw = getattr(request, "raw_request_context", None)
        return {"trace_id": request.trace.trace_id, "raw": None if raw is None else raw.hex()}

    config.add_view(view, route_name="example", renderer="json")
    return webtest.TestApp(config.make_wsgi_app())


def test_a_header_trust_handler_decides_per_request():
    app = app_with(BaseplateConfigurator(Baseplate(), header_trust_handler=TrustInternalCallers()))
    edge = {"X-Edge-Request": "payload"}
    trusted = app.get("/example", headers={**UPSTREAM, **edge, "X-Internal": "yes"}).json
    untrusted = app.get("/example", headers={**UPSTREAM, **edge}).json
    assert trusted == {"trace_id": 1234, "raw": None}
    assert untrusted["trace_id"] != 1234


def test_static_trust_handler_is_the_default():
    trusting = BaseplateConfigurator(Baseplate(), trust_trace_headers=True)
    assert isinstance(trusting.header_trust_handler, StaticTrustHandler)
    assert trusting.header_trust_handler.trust_headers is True
    reported = app_with(trusting).get("/example", headers={**UPSTREAM, "X-Edge-Request": "e"})
    assert reported.json == {"trace_id": 1234, "raw": b"e".hex()}
    handler = StaticTrustHandler()
    assert not handler.should_trust_trace_headers(None)
    assert not handler.should_trust_edge_context_payload(None)
    with pytest.raises(NotImplementedError):
        HeaderTrustHandler().should_trust_trace_headers(None)


def test_server_span_initialized_is_a_baseplate_event():
    assert issubclass(ServerSpanInitialized, BaseplateEvent)
    assert BaseplateEvent("request").request == "request"


def test_the_wsgi_app_carries_its_baseplate():
    baseplate = Baseplate()
    config = Configurator()
    config.include(BaseplateConfigurator(baseplate).includeme)
    assert config.make_wsgi_app().baseplate is baseplate


def test_pshell_setup_starts_a_server_span_on_the_shell_request():
    baseplate = Baseplate()
    config = Configurator()
    config.include(BaseplateConfigurator(baseplate).includeme)
    app = config.make_wsgi_app()
    env = prepare(registry=app.registry)
    fired: list[Any] = []
    app.registry.registerHandler(fired.append, (ServerSpanInitialized,))
    try:
        pshell_setup(env)
        request = env["request"]
        assert isinstance(request.trace, ServerSpan)
        assert request.trace.name == "shell"
        assert [event.request for event in fired] == [request]
        request.trace.finish()
    finally:
        env["closer"]()


def test_trace_header_names_match_the_headers_read():
    headers = {"X-B3-TraceId": "1", "X-Span": "2", "X-Parent": "3"}
    assert TraceInfo.extract_upstream_header_values(TRACE_HEADER_NAMES, headers) == {
        "trace_id": "1",
        "span_id": "2",
        "parent_span_id": "3",
    }
    with pytest.raises(ValueError, match="trace_id"):
        TraceInfo.extract_upstream_header_values(
            TRACE_HEADER_NAMES, {"X-Trace": "1", "X-B3-TraceId": "2"}
        )
    assert THRIFT_TRACE_HEADER_NAMES["trace_id"] == (b"Trace", b"B3-TraceId")


def test_paste_make_app_calls_the_factory_with_the_other_options(tmp_path: Path, monkeypatch):
    (tmp_path / "paste_app.py").write_text(
        "def make_app(app_config):\n    return ('app', app_config)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert paste_make_app({}, factory="paste_app", foo="3") == ("app", {"foo": "3"})
        assert make_app({"factory": "paste_app:make_app"}) == ("app", {})
    finally:
        sys.modules.pop("paste_app", None)
    with pytest.raises(ConfigFileError, match="factory: required but missing"):
        make_app({})
