"""The Sentry observer and error reporter, against a local stand-in for Sentry.

The stand-in speaks Sentry's envelope protocol over real HTTP, so these tests
exercise sentry-sdk's own transport, background worker and compression.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import context as otel_context
from sentry_sdk.scope import Scope

from baseplate import error_reporter_from_config
from baseplate.config import ConfigurationError
from baseplate.core import Baseplate, TraceInfo
from baseplate.diagnostics import sentry as sentry_module
from baseplate.diagnostics.sentry import (
    SentryBaseplateObserver,
    SentryClient,
    make_client,
    reset_state,
)

FLUSH_TIMEOUT = 10.0


# -- the stand-in ---------------------------------------------------------------


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Split an envelope into its header and its (item header, payload) pairs."""
    first, _, rest = body.partition(b"\n")
    header = json.loads(first)
    items = []
    position = 0
    while position < len(rest):
        end = rest.find(b"\n", position)
        end = len(rest) if end == -1 else end
        line = rest[position:end]
        position = end + 1
        if not line.strip():
            continue
        item_header = json.loads(line)
        length = item_header.get("length")
        if length is not None:
            payload = rest[position : position + length]
            position += length + 1
        else:
            end = rest.find(b"\n", position)
            end = len(rest) if end == -1 else end
            payload = rest[position:end]
            position = end + 1
        items.append((item_header, payload))
    return header, items


class SentryStandIn:
    """Sentry's envelope endpoint on 127.0.0.1, recording every event it receives."""

    project = "1"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stand_in.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def dsn(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://public@{host}:{port}/{self.project}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        encoding = request.headers.get("Content-Encoding", "identity")
        with self.lock:
            self.requests.append({"path": request.path, "headers": dict(request.headers)})
            if request.path != f"/api/{self.project}/envelope/":
                self.errors.append(f"unexpected path {request.path}")
                request.send_response(404)
                request.end_headers()
                return
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding != "identity":
                self.errors.append(f"unexpected encoding {encoding}")
                request.send_response(415)
                request.end_headers()
                return
            _, items = parse_envelope(body)
            for item_header, payload in items:
                if item_header.get("type") == "event":
                    self.events.append(json.loads(payload))
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        request.wfile.write(b"{}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def sentry_server():
    server = SentryStandIn()
    yield server
    server.close()
    assert server.errors == []


@pytest.fixture(autouse=True)
def _sentry_state():
    """Each test starts with fresh reporters' state, and ends with sentry-sdk's scopes as they were.

    The reporters are never sentry-sdk's global client; this checks it and
    puts back the thread's isolation and current scopes.
    """
    reset_state()
    isolation, current = Scope.get_isolation_scope(), Scope.get_current_scope()
    yield
    Scope.set_isolation_scope(isolation)
    Scope.set_current_scope(current)
    assert not sentry_sdk.get_global_scope().client.is_active()


@pytest.fixture
def reporters(sentry_server):
    """Make reporters from config (DSN of the stand-in by default); closes them."""
    made: list[SentryClient] = []

    def make(**settings: str) -> SentryClient:
        raw_config = {"sentry.dsn": sentry_server.dsn}
        raw_config.update({f"sentry.{key}": value for key, value in settings.items()})
        reporter = error_reporter_from_config(raw_config, __name__)
        made.append(reporter)
        return reporter

    yield make
    for reporter in made:
        reporter.close(timeout=FLUSH_TIMEOUT)


def received(reporter: SentryClient, server: SentryStandIn) -> list[dict[str, Any]]:
    reporter.flush(timeout=FLUSH_TIMEOUT)
    with server.lock:
        return list(server.events)


def make_baseplate(reporter: Any) -> Baseplate:
    baseplate = Baseplate()
    baseplate.configure_error_reporting(reporter)
    return baseplate


def server_span(baseplate: Baseplate, name: str = "handler", trace_id: int = 1234, span_id=5678):
    context = SimpleNamespace()
    span = baseplate.make_server_span(
        context, name, TraceInfo.from_upstream(trace_id, 1, span_id, True, None)
    )
    return context, span


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    return event["exception"]["values"][-1]


# -- what the observer reports ------------------------------------------------


def test_exception_ending_the_request_is_reported_with_trace_tags(spans, reporters, sentry_server):
    reporter = reporters()
    _, span = server_span(make_baseplate(reporter))
    with pytest.raises(ValueError, match="boom"), span:
        raise ValueError("boom")

    [event] = received(reporter, sentry_server)
    exception = exception_of(event)
    assert (exception["type"], exception["value"]) == ("ValueError", "boom")
    assert exception["mechanism"] == {"type": "baseplate", "handled": False}
    assert event["level"] == "error"
    assert event["transaction"] == "handler"
    assert event["tags"]["trace_id"] == "1234"
    assert event["tags"]["span_id"] == "5678"
    assert event["tags"]["span_name"] == "handler"
    assert "sentry_key=public" in sentry_server.requests[0]["headers"]["X-Sentry-Auth"]


def test_successful_request_reports_nothing(spans, reporters, sentry_server):
    reporter = reporters()
    _, span = server_span(make_baseplate(reporter))
    with span, span.make_child("call"):
        pass
    assert received(reporter, sentry_server) == []


def test_exception_is_reported_once_when_child_spans_failed_with_it(
    spans, reporters, sentry_server
):
    reporter = reporters()
    _, span = server_span(make_baseplate(reporter))
    call = span.make_child("call")
    local = span.make_child("local", local=True, component_name="c")
    with pytest.raises(KeyError), span, call, local:
        raise KeyError("missing")

    events = received(reporter, sentry_server)
    assert [exception_of(event)["type"] for event in events] == ["KeyError"]
    assert events[0]["tags"]["span_name"] == "handler"


def test_exception_the_application_reported_is_not_reported_again(spans, reporters, sentry_server):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    with pytest.raises(RuntimeError), span:
        try:
            raise RuntimeError("handled, then re-raised")
        except RuntimeError:
            context.sentry.captureException(extra={"where": "handler"})
            raise

    [event] = received(reporter, sentry_server)
    assert exception_of(event)["type"] == "RuntimeError"
    assert event["extra"]["where"] == "handler"
    assert exception_of(event)["mechanism"]["handled"] is True


def test_a_different_exception_ending_the_request_is_still_reported(
    spans, reporters, sentry_server
):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    with pytest.raises(TypeError), span:
        try:
            raise RuntimeError("first")
        except RuntimeError:
            context.sentry.captureException()
        raise TypeError("second")

    events = received(reporter, sentry_server)
    assert [exception_of(event)["type"] for event in events] == ["RuntimeError", "TypeError"]


def test_system_exit_is_not_reported(spans, reporters, sentry_server):
    reporter = reporters()
    _, span = server_span(make_baseplate(reporter))
    with pytest.raises(SystemExit), span:
        raise SystemExit(0)
    assert received(reporter, sentry_server) == []


def test_observer_accepts_a_sentry_sdk_client(spans, sentry_server):
    sdk_client = sentry_sdk.Client(
        dsn=sentry_server.dsn, default_integrations=False, auto_enabling_integrations=False
    )
    try:
        baseplate = Baseplate()
        baseplate.register(SentryBaseplateObserver(sdk_client))
        context, span = server_span(baseplate)
        with span:
            assert isinstance(context.sentry, SentryClient)
            context.sentry.captureMessage("hello")
        sdk_client.flush(timeout=FLUSH_TIMEOUT)
        assert [event["logentry"]["message"] for event in sentry_server.events] == ["hello"]
    finally:
        sdk_client.close(timeout=FLUSH_TIMEOUT)


# -- raven-style calls on context.sentry ----------------------------------------


def test_capture_message_with_raven_style_context(spans, reporters, sentry_server):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    with span:
        context.sentry.user_context({"id": "t2_1"})
        context.sentry.user_context({"email": "someone@example.com"})
        context.sentry.extra_context({"cart": 3})
        context.sentry.tags_context({"feature": "on", "color": "red"})
        event_id = context.sentry.captureMessage(
            "something odd", tags={"color": "blue"}, extra={"step": "checkout"}
        )
        context.sentry.captureMessage("only a warning", level=logging.WARNING)
        context.sentry.captureMessage("%s of %s", params=("1", "2"), level="info")

    first, second, third = received(reporter, sentry_server)
    assert first["event_id"] == event_id
    assert third["event_id"] == context.sentry.last_event_id
    assert first["logentry"]["message"] == "something odd"
    assert first["level"] == "error"  # raven's default level
    assert first["user"] == {"id": "t2_1", "email": "someone@example.com"}
    assert first["extra"] == {"cart": 3, "step": "checkout"}
    assert first["tags"]["feature"] == "on"
    assert first["tags"]["color"] == "blue"  # the call's tags win
    assert first["tags"]["trace_id"] == "1234"
    assert second["level"] == "warning"
    assert third["level"] == "info"
    assert third["logentry"] == {"message": "%s of %s", "params": ["1", "2"], "formatted": "1 of 2"}


def test_capture_exception_with_explicit_exc_info_and_data(spans, reporters, sentry_server):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    try:
        raise LookupError("not here")
    except LookupError as error:
        saved = (type(error), error, error.__traceback__)
    with span:
        context.sentry.captureException(
            exc_info=saved,
            data={"user": {"id": "u1"}, "tags": {"source": "data"}},
            fingerprint=["lookup"],
        )
        assert context.sentry.captureException() is None  # nothing is being handled

    [event] = received(reporter, sentry_server)
    assert (exception_of(event)["type"], exception_of(event)["value"]) == (
        "LookupError",
        "not here",
    )
    assert event["user"] == {"id": "u1"}
    assert event["tags"]["source"] == "data"
    assert event["fingerprint"] == ["lookup"]
    assert exception_of(event)["stacktrace"]["frames"][-1]["function"].startswith("test_")


def test_raven_context_object_and_client_defaults(spans, reporters, sentry_server):
    reporter = reporters(site="eu-west")
    reporter.tags["team"] = "payments"
    reporter.extra["build"] = 7
    context, span = server_span(make_baseplate(reporter))
    with span:
        context.sentry.context.merge({"tags": {"a": "1"}, "extra": {"b": 2}, "user": {"id": "u"}})
        snapshot = context.sentry.context.get()
        context.sentry.captureMessage("with context")
        context.sentry.context.clear()
        context.sentry.captureMessage("cleared")

    assert snapshot["tags"]["a"] == "1"
    assert snapshot["extra"]["b"] == 2
    assert snapshot["user"] == {"id": "u"}
    with_context, cleared = received(reporter, sentry_server)
    assert with_context["tags"]["site"] == "eu-west"
    assert with_context["tags"]["team"] == "payments"
    assert with_context["tags"]["a"] == "1"
    assert with_context["extra"] == {"build": 7, "b": 2}
    assert with_context["user"] == {"id": "u"}
    assert "a" not in cleared["tags"]
    assert "user" not in cleared
    assert cleared["extra"] == {"build": 7}
    assert cleared["tags"]["site"] == "eu-west"  # the client's tags stay
    assert cleared["tags"]["trace_id"] == "1234"  # and so do the request's


def test_breadcrumbs_are_attached_to_later_events(spans, reporters, sentry_server):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    with span:
        context.sentry.captureBreadcrumb(message="loaded cart", category="cart", level="info")
        context.sentry.captureMessage("after a breadcrumb")

    [event] = received(reporter, sentry_server)
    [crumb] = event["breadcrumbs"]["values"]
    assert (crumb["message"], crumb["category"], crumb["level"]) == ("loaded cart", "cart", "info")


def test_sentry_sdk_calls_in_a_request_use_its_scope(spans, reporters, sentry_server):
    reporter = reporters()
    _, span = server_span(make_baseplate(reporter))
    with span:
        sentry_sdk.set_tag("via", "sentry_sdk")
        sentry_sdk.capture_message("direct")

    [event] = received(reporter, sentry_server)
    assert event["tags"]["via"] == "sentry_sdk"
    assert event["tags"]["trace_id"] == "1234"
    assert not sentry_sdk.get_client().is_active()  # outside the request: no client


def test_request_scope_is_gone_after_the_request(spans, reporters, sentry_server):
    reporter = reporters()
    before = Scope.get_isolation_scope()
    context, span = server_span(make_baseplate(reporter))
    with span:
        context.sentry.tags_context({"request": "only"})
        assert Scope.get_isolation_scope() is not before
    assert Scope.get_isolation_scope() is before

    reporter.captureMessage("outside")
    [event] = received(reporter, sentry_server)
    assert "request" not in event.get("tags", {})
    assert "trace_id" not in event.get("tags", {})


def test_reporter_outside_requests_uses_the_ambient_scope(reporters, sentry_server):
    reporter = reporters()
    with sentry_sdk.isolation_scope():
        reporter.tags_context({"job": "nightly"})
        reporter.user_context({"id": "cron"})
        reporter.captureMessage("from a script")
    reporter.captureMessage("after the scope")

    inside, after = received(reporter, sentry_server)
    assert inside["tags"]["job"] == "nightly"
    assert inside["user"] == {"id": "cron"}
    assert "job" not in after.get("tags", {})


def test_concurrent_requests_do_not_share_context(spans, reporters, sentry_server):
    reporter = reporters()
    baseplate = make_baseplate(reporter)
    count = 8
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def request(number: int) -> None:
        try:
            context, span = server_span(baseplate, f"handler{number}", trace_id=number + 1)
            with pytest.raises(ValueError), span:
                context.sentry.tags_context({"request": str(number)})
                context.sentry.user_context({"id": str(number)})
                sentry_sdk.set_extra("number", number)
                barrier.wait(timeout=10)
                context.sentry.captureMessage(f"message {number}")
                barrier.wait(timeout=10)
                raise ValueError(str(number))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=request, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    events = received(reporter, sentry_server)
    assert len(events) == 2 * count
    for event in events:
        if "exception" in event:
            number = exception_of(event)["value"]
        else:
            number = event["logentry"]["message"].split()[-1]
        assert event["tags"]["request"] == number
        assert event["tags"]["trace_id"] == str(int(number) + 1)
        assert event["tags"]["span_name"] == f"handler{number}"
        assert event["user"] == {"id": number}
        assert event["extra"] == {"number": int(number)}


def test_concurrent_requests_in_greenlets_do_not_share_context(spans, reporters, sentry_server):
    import gevent

    reporter = reporters()
    baseplate = make_baseplate(reporter)

    def request(number: int) -> None:
        context, span = server_span(baseplate, f"handler{number}", trace_id=number + 1)
        with span:
            context.sentry.tags_context({"request": str(number)})
            gevent.sleep(0)  # let the other greenlets run in between
            sentry_sdk.capture_message(str(number))

    gevent.joinall([gevent.spawn(request, number) for number in range(5)], raise_error=True)

    events = received(reporter, sentry_server)
    assert sorted(event["message"] for event in events) == list("01234")
    for event in events:
        number = event["message"]
        assert event["tags"]["request"] == number
        assert event["tags"]["trace_id"] == str(int(number) + 1)


def test_request_finished_in_another_thread_does_not_break(spans, reporters, sentry_server):
    reporter = reporters()
    before = Scope.get_isolation_scope()
    _, span = server_span(make_baseplate(reporter))
    span.start()
    finisher = threading.Thread(target=span.finish, args=((ValueError, ValueError("late"), None),))
    finisher.start()
    finisher.join()
    assert [exception_of(event)["value"] for event in received(reporter, sentry_server)] == ["late"]
    # This thread still holds the request's scope; the next request forks
    # from it but never shares its data.
    assert Scope.get_isolation_scope() is not before
    # Started here and finished in another thread, the span is still this
    # thread's current one: clear it, as the next request here would.
    otel_context.attach(otel_context.Context())


# -- configuration ---------------------------------------------------------------


class IgnoredError(Exception):
    pass


def test_ignore_exceptions_suppresses_matching_classes(spans, reporters, sentry_server):
    reporter = reporters(
        ignore_exceptions="builtins.Key*, tests.diagnostics.test_sentry.IgnoredError, OSError"
    )
    baseplate = make_baseplate(reporter)
    for error in (KeyError("k"), IgnoredError(), OSError("os"), ValueError("reported")):
        _, span = server_span(baseplate)
        with pytest.raises(type(error)), span:
            raise error

    events = received(reporter, sentry_server)
    assert [exception_of(event)["type"] for event in events] == ["ValueError"]


def tag_processor(event, hint):
    event.setdefault("tags", {})["processed"] = "yes"
    return event


def drop_secrets(event, hint):
    message = event.get("logentry", {}).get("message", "")
    return None if "secret" in message else event


def failing_processor(event, hint):
    raise RuntimeError("processor bug")


class RavenStyleProcessor:
    def __init__(self, client):
        self.client = client

    def process(self, data, **kwargs):
        data.setdefault("extra", {})["client_is_reporter"] = isinstance(self.client, SentryClient)
        return data


def test_processors_can_modify_and_drop_events(reporters, sentry_server):
    module = "tests.diagnostics.test_sentry"
    reporter = reporters(
        processors=f"{module}.tag_processor, {module}.drop_secrets, {module}.RavenStyleProcessor"
    )
    assert reporter.captureMessage("the secret is 42") is None
    reporter.captureMessage("public")

    [event] = received(reporter, sentry_server)
    assert event["logentry"]["message"] == "public"
    assert event["tags"]["processed"] == "yes"
    assert event["extra"]["client_is_reporter"] is True


def test_failing_processor_drops_the_event_and_is_logged_once(reporters, sentry_server, caplog):
    reporter = reporters(processors="tests.diagnostics.test_sentry.failing_processor")
    with caplog.at_level(logging.DEBUG, logger=sentry_module.__name__):
        reporter.captureMessage("unprocessed")
        reporter.captureMessage("unprocessed again")
    assert received(reporter, sentry_server) == []
    lines = [r for r in caplog.records if "failing_processor" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.DEBUG]
    assert "processor bug" in caplog.text  # the first one's traceback
    assert "(2 times so far)" in lines[1].getMessage()


def test_processors_that_cannot_be_imported_are_a_configuration_error(sentry_server):
    with pytest.raises(ConfigurationError) as error:
        error_reporter_from_config(
            {"sentry.dsn": sentry_server.dsn, "sentry.processors": "no.such.module.processor"},
            __name__,
        )
    assert error.value.key == "sentry.processors"


def test_blank_dsn_discards_events(spans, sentry_server, monkeypatch):
    monkeypatch.setenv("SENTRY_DSN", sentry_server.dsn)  # not consulted
    reporter = error_reporter_from_config({"sentry.dsn": ""}, __name__)
    missing = error_reporter_from_config({}, __name__)
    try:
        assert not reporter.is_enabled()
        assert reporter.sdk_client.transport is None
        assert reporter.captureMessage("nowhere") is None
        _, span = server_span(make_baseplate(reporter))
        with pytest.raises(ValueError), span:
            raise ValueError("dropped")
        assert missing.captureMessage("nowhere either") is None
        reporter.flush(timeout=FLUSH_TIMEOUT)
    finally:
        reporter.close()
        missing.close()
    assert sentry_server.requests == []


def test_sample_rate_zero_sends_nothing(spans, reporters, sentry_server):
    reporter = reporters(sample_rate="0%")
    _, span = server_span(make_baseplate(reporter))
    with pytest.raises(ValueError), span:
        raise ValueError("unlucky")
    reporter.captureMessage("also unlucky")
    assert received(reporter, sentry_server) == []


def test_sample_rate_is_a_percentage(reporters, sentry_server):
    assert reporters(sample_rate="37%").sdk_client.options["sample_rate"] == pytest.approx(0.37)
    everything = reporters(sample_rate="100%")
    everything.captureMessage("always")
    everything.captureMessage("never", sample_rate=0.0)  # raven's per-call rate
    assert [e["logentry"]["message"] for e in received(everything, sentry_server)] == ["always"]


def test_environment_and_paths(reporters, sentry_server):
    reporter = reporters(
        environment="staging", include_paths="myapp, mylib", exclude_paths="tests.diagnostics"
    )
    options = reporter.sdk_client.options
    assert options["in_app_include"] == ["myapp", "mylib"]
    assert options["in_app_exclude"] == ["tests.diagnostics"]
    assert options["default_integrations"] is False
    assert reporter.sdk_client.integrations == {}

    try:
        raise ValueError("where")
    except ValueError:
        reporter.captureException()
    [event] = received(reporter, sentry_server)
    assert event["environment"] == "staging"
    frames = exception_of(event)["stacktrace"]["frames"]
    assert [frame["in_app"] for frame in frames if frame["module"] == __name__] == [False]


def test_sentry_sdk_is_set_up_without_global_hooks(reporters):
    hook = sys.excepthook
    reporters()
    assert sys.excepthook is hook
    assert not sentry_sdk.get_client().is_active()


# -- the release, from the application's git checkout ---------------------------


def git(directory: Path, *args: str) -> str:
    """Run git in ``directory`` as a test's author; its output, stripped."""
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=directory, env=environment, capture_output=True, text=True, check=True
    ).stdout.strip()


def add_service(root: Path, name: str = "myservice") -> Path:
    """An application package under ``root/src``; returns its directory."""
    package = root / "src" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    return package


def release_of(monkeypatch, package: Path) -> str | None:
    """The default release of a reporter whose application module is ``package``."""
    name = f"release_test_{package.parent.parent.name}"
    monkeypatch.setitem(sys.modules, name, SimpleNamespace(__file__=str(package / "__init__.py")))
    release: str | None = make_client("", module_name=name).sdk_client.options["release"]
    return release


@pytest.fixture
def repository(tmp_path, monkeypatch) -> Path:
    """A git repository with one commit of an application package, and no SENTRY_RELEASE."""
    monkeypatch.delenv("SENTRY_RELEASE", raising=False)
    # git looks no higher than tmp_path's parent, whatever holds it.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "checkout"
    add_service(root)
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(root))
    git(root, "add", "src")
    git(root, "commit", "--quiet", "--message=first")
    return root


@pytest.mark.parametrize("checkout", ["branch", "packed-refs", "detached"])
def test_release_is_the_checked_out_commit(repository, monkeypatch, checkout):
    first = git(repository, "rev-parse", "HEAD")
    git(repository, "commit", "--quiet", "--allow-empty", "--message=second")
    if checkout == "packed-refs":
        git(repository, "pack-refs", "--all")
        assert not (repository / ".git" / "refs" / "heads" / "main").exists()
    elif checkout == "detached":
        git(repository, "checkout", "--quiet", "--detach", first)
    expected = first if checkout == "detached" else git(repository, "rev-parse", "main")
    assert release_of(monkeypatch, repository / "src" / "myservice") == expected


def test_release_in_a_worktree_is_the_worktree_commit(repository, tmp_path, monkeypatch):
    main = git(repository, "rev-parse", "HEAD")
    worktree = tmp_path / "worktree"
    git(repository, "worktree", "add", "--quiet", "-b", "feature", str(worktree))
    git(worktree, "commit", "--quiet", "--allow-empty", "--message=feature")
    feature = git(worktree, "rev-parse", "HEAD")
    assert feature != main
    assert release_of(monkeypatch, worktree / "src" / "myservice") == feature
    assert release_of(monkeypatch, repository / "src" / "myservice") == main


@pytest.fixture
def outside_repositories(tmp_path, monkeypatch) -> None:
    """No SENTRY_RELEASE, and a working directory in no repository.

    sentry-sdk guesses a release of its own, from the working directory's
    checkout, when none is given.
    """
    monkeypatch.delenv("SENTRY_RELEASE", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("outside_repositories")
def test_no_release_outside_a_repository(tmp_path, monkeypatch):
    assert release_of(monkeypatch, add_service(tmp_path / "plain")) is None


@pytest.mark.usefixtures("outside_repositories")
def test_no_release_in_a_repository_without_commits(tmp_path, monkeypatch):
    root = tmp_path / "empty"
    package = add_service(root)
    git(tmp_path, "init", "--quiet", str(root))
    assert release_of(monkeypatch, package) is None


@pytest.mark.usefixtures("outside_repositories")
def test_no_release_without_git(repository, tmp_path, monkeypatch):
    nowhere = tmp_path / "bin"
    nowhere.mkdir()
    monkeypatch.setenv("PATH", str(nowhere))
    assert release_of(monkeypatch, repository / "src" / "myservice") is None


def test_sentry_release_variable_wins(monkeypatch):
    monkeypatch.setenv("SENTRY_RELEASE", "v1.2.3")
    reporter = make_client("", module_name=__name__)
    assert reporter.sdk_client.options["release"] == "v1.2.3"


def test_misuse_of_raven_calls_is_logged_not_raised(spans, reporters, sentry_server, caplog):
    reporter = reporters()
    context, span = server_span(make_baseplate(reporter))
    with span, caplog.at_level(logging.ERROR, logger=sentry_module.__name__):
        assert context.sentry.captureMessage("bad data", data={"tags": "not a dict"}) is None
        context.sentry.tags_context(None)
        context.sentry.captureMessage("still works")
    assert "captureMessage failed" in caplog.text
    assert [event["logentry"]["message"] for event in received(reporter, sentry_server)] == [
        "still works"
    ]


def test_reset_state_logs_the_next_failure_as_the_first(reporters, caplog):
    reporter = reporters()

    def misuse() -> list[int]:
        caplog.clear()
        assert reporter.captureMessage("bad data", data={"tags": "not a dict"}) is None
        return [record.levelno for record in caplog.records]

    with caplog.at_level(logging.DEBUG, logger=sentry_module.__name__):
        assert misuse() == [logging.ERROR]
        assert misuse() == [logging.DEBUG]
        reset_state()
        assert misuse() == [logging.ERROR]
