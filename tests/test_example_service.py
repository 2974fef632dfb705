"""The example service (``examples/``), through its app factory and its INI file."""

from __future__ import annotations

import configparser
import http.client
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # WebOb 1.8 imports the cgi module, deprecated since Python 3.11.
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webob  # noqa: F401

import pytest
import webtest
from opentelemetry.trace import SpanKind

from bridge import provider
from examples import example_service
from tests._helpers import wait_until
from tests.server import free_port

INI_PATH = Path(__file__).resolve().parent.parent / "examples" / "example.ini"
TIMER = r"[0-9]+(?:\.[0-9]+)?"


def ini_app_options() -> dict[str, str]:
    """The ``[app:main]`` options as baseplate-serve hands them to the factory."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(INI_PATH)
    options = dict(parser["app:main"])
    del options["factory"]
    return options


@pytest.fixture
def make_app(spans):
    """The example app from the INI's options, with overrides; spans collect in ``spans``."""

    def make(**overrides: str) -> webtest.TestApp:
        options = ini_app_options()
        options.update(overrides)
        return webtest.TestApp(
            example_service.make_app(options), extra_environ={"REMOTE_ADDR": "127.0.0.1"}
        )

    return make


def test_ini_names_the_factories():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(INI_PATH)
    assert parser["app:main"]["factory"] == "examples.example_service:make_app"
    assert parser["server:main"]["factory"] == "baseplate.server.wsgi"
    assert parser["app:main"]["tracing.exporter"] == "log"
    assert parser["app:main"]["metrics.endpoint"] == ""


def test_hello_and_notes(make_app):
    app = make_app()
    assert app.get("/").text == "Hello from the Baseplate example service!\n"
    assert app.get("/notes").json == {"notes": []}
    assert app.post("/notes", b"buy milk").json == {"id": 1, "text": "buy milk"}
    assert app.post("/notes", "café".encode()).json == {"id": 2, "text": "café"}
    assert app.get("/notes").json == {
        "notes": [{"id": 1, "text": "buy milk"}, {"id": 2, "text": "café"}]
    }
    assert app.post("/notes", b"   ", status=400).status_int == 400


def test_each_app_has_its_own_memory_database(make_app):
    first, second = make_app(), make_app()
    first.post("/notes", b"only in the first")
    assert second.get("/notes").json == {"notes": []}


def test_file_database_keeps_notes(make_app, tmp_path):
    path = str(tmp_path / "notes.sqlite")
    make_app(**{"database.path": path}).post("/notes", b"kept")
    assert make_app(**{"database.path": path}).get("/notes").json == {
        "notes": [{"id": 1, "text": "kept"}]
    }


def test_health_check(make_app):
    response = make_app().get("/health")
    assert (response.status_int, response.text) == (200, "OK")


def test_unknown_path_is_404(make_app):
    make_app().get("/nowhere", status=404)


def test_spans_of_a_request(make_app, spans):
    make_app().post("/notes", b"traced")
    make_app().get("/notes")
    exported = {span.name: span for span in spans.get_finished_spans()}
    assert set(exported) == {"add_note", "list_notes", "db.execute", "render"}
    server = exported["list_notes"]
    assert server.kind is SpanKind.SERVER
    assert server.attributes["http.status_code"] == 200
    for child in ("db.execute", "render"):
        assert exported[child].parent.span_id == server.context.span_id
        assert exported[child].context.trace_id == server.context.trace_id
    assert exported["db.execute"].kind is SpanKind.CLIENT
    assert exported["db.execute"].attributes["statement"].startswith("SELECT id, text")
    assert exported["render"].kind is SpanKind.INTERNAL


def test_spans_are_logged(make_app, caplog):
    caplog.set_level(logging.DEBUG, logger="bridge.export")
    make_app().get("/notes")
    assert provider.get_tracer_provider().force_flush(10_000)
    records = [
        json.loads(record.getMessage().removeprefix("span: "))
        for record in caplog.records
        if record.name == "bridge.export"
    ]
    names = sorted(record["name"] for record in records)
    assert names == ["db.execute", "list_notes", "render"]


def test_logs_carry_the_trace_id(make_app, caplog):
    caplog.set_level(logging.INFO, logger="examples.example_service")
    app = make_app()
    app.post("/notes", b"logged")
    [record] = [record for record in caplog.records if record.getMessage() == "stored note 1"]
    assert re.fullmatch(r"[0-9]+", record.trace_id)


def test_metrics(make_app, statsd):
    app = make_app(**{"metrics.endpoint": statsd.endpoint})
    app.post("/notes", b"counted")
    [datagram] = statsd.received()
    lines = datagram.decode().split("\n")
    assert re.fullmatch(rf"example\.clients\.db\.execute:{TIMER}\|ms", lines[0])
    assert re.fullmatch(rf"example\.server\.add_note:{TIMER}\|ms", lines[1])
    assert sorted(lines[2:]) == [
        "example.clients.db.execute.success:1|c",
        "example.notes.created:1|c",
        "example.server.add_note.success:1|c",
    ]

    app.get("/notes")
    [datagram] = statsd.received()
    assert re.search(rf"^example\.notes\.render:{TIMER}\|ms$", datagram.decode(), re.MULTILINE)


def test_database_connection_is_closed_after_the_request(make_app, monkeypatch):
    opened: list[Any] = []
    real_connect = example_service.NotesDatabase.connect

    def tracking_connect(self: Any) -> Any:
        connection = real_connect(self)
        opened.append(connection)
        return connection

    monkeypatch.setattr(example_service.NotesDatabase, "connect", tracking_connect)
    app = make_app()
    opened.clear()  # the factory's own connection stays open
    app.get("/notes")
    app.get("/")  # does not use the database: no connection
    [connection] = opened
    with pytest.raises(Exception, match="closed"):
        connection.execute("SELECT 1")


def test_bad_configuration_fails_at_start_up():
    options = ini_app_options()
    del options["tracing.service_name"]
    with pytest.raises(Exception, match=r"tracing\.service_name"):
        example_service.make_app(options)


# -- for real: baseplate-serve examples/example.ini ------------------------------------


def test_served_by_baseplate_serve(tmp_path):
    port = free_port()
    output_path = tmp_path / "output.log"
    command = [
        str(Path(sys.executable).parent / "baseplate-serve"),
        "examples/example.ini",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=INI_PATH.parent.parent, stdout=output, stderr=subprocess.STDOUT
        )
    try:

        def listening() -> bool:
            assert process.poll() is None, output_path.read_text()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, "the server listening")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/notes", body=b"served", headers={"X-Trace": "1"})
        added = connection.getresponse()
        assert (added.status, json.loads(added.read())) == (200, {"id": 1, "text": "served"})
        connection.request("GET", "/health")
        health = connection.getresponse()
        assert (health.status, health.read()) == (200, b"OK")
        connection.close()

        def logged_spans() -> list[dict[str, Any]]:
            return [
                json.loads(line.partition(" span: ")[2])
                for line in output_path.read_text().splitlines()
                if " span: " in line
            ]

        wait_until(lambda: len(logged_spans()) >= 2, "two spans logged")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    output = output_path.read_text()
    add_note = next(span for span in logged_spans() if span["name"] == "add_note")
    # Untrusted headers are ignored: a new trace, whose id the request's log line shows.
    assert add_note["traceId"] != 1
    assert f"[trace={add_note['traceId']}] stored note 1" in output
    # The health check (and its SELECT 1) is kept out of tracing.
    assert sorted(span["name"] for span in logged_spans()) == ["add_note", "db.execute"]
