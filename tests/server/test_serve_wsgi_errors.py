"""What ``baseplate-serve`` logs when a WSGI request fails, as a real subprocess.

An exception in the application is one ERROR record through logging (with
the request's trace id under the Pyramid integration), never gevent's
traceback on stderr; a request that is not HTTP at all is one INFO line.
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.server import http_get, write, write_files

APP = """
from pyramid.config import Configurator

from baseplate import Baseplate
from baseplate.integration.pyramid import BaseplateConfigurator


def boom(request):
    raise KeyError("the missing key")


def make_app(app_config):
    baseplate = Baseplate()
    baseplate.configure_logging()
    config = Configurator()
    config.include(BaseplateConfigurator(baseplate, trust_trace_headers=True).includeme)
    config.add_route("boom", "/boom")
    config.add_view(boom, route_name="boom")
    return config.make_wsgi_app()


def make_plain_app(app_config):
    def app(environ, start_response):
        raise ValueError("plain failure")

    return app
"""

INI = """
[server:main]
factory = baseplate.server.wsgi

[app:main]
factory = errorapp:make_app

[app:plain]
factory = errorapp:make_plain_app
"""

LOGGING = """
[loggers]
keys = root, pyramid

[handlers]
keys = out

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = out

[logger_pyramid]
qualname = baseplate.integration.pyramid
level = {level}
handlers = out
propagate = 0

[handler_out]
class = StreamHandler
args = (sys.stdout,)
formatter = plain

[formatter_plain]
format = CUSTOM %(levelname)s %(name)s trace_id=%(trace_id)s %(message)s
"""

#: A line of the default log format, up to the logger's name.
PREFIX = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ "


@pytest.fixture
def app_dir(tmp_path):
    return write_files(tmp_path, {"errorapp.py": APP, "app.ini": INI})


def trace_headers(trace_id: str) -> dict[str, str]:
    """Headers continuing the trace ``trace_id`` (the app trusts them)."""
    return {"X-Trace": trace_id, "X-Parent": "2", "X-Span": "3", "X-Sampled": "0"}


def output_after_stop(server) -> list[str]:
    """Every line the server wrote, once it has stopped."""
    assert server.stop() == 0
    return server.lines


def test_a_pyramid_view_error_is_one_error_record_with_the_trace_id(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    status, _ = http_get(server.address(), "/boom", headers=trace_headers("1234"))
    assert status == 500
    server.wait_for(r"^KeyError: 'the missing key'$")

    lines = output_after_stop(server)
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, "\n".join(lines)
    assert re.match(
        PREFIX + r"ERROR baseplate\.integration\.pyramid \[trace=1234\] "
        r"unexpected exception handling GET /boom$",
        errors[0],
    )
    # The traceback follows the record, once, and is the view's exception alone.
    text = "\n".join(lines)
    assert text.count("Traceback (most recent call last):") == 1
    assert lines[lines.index(errors[0]) + 1] == "Traceback (most recent call last):"
    assert "in boom" in text
    assert "HTTPNotFound" not in text
    assert "During handling" not in text


def test_a_plain_wsgi_app_error_is_one_error_record_of_the_server(servers, app_dir):
    server = servers.start("app.ini", "--app-name", "plain", "--bind", "127.0.0.1:0", cwd=app_dir)
    assert http_get(server.address(), "/anything?x=1")[0] == 500
    server.wait_for(r"^ValueError: plain failure$")

    lines = output_after_stop(server)
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, "\n".join(lines)
    assert re.match(
        PREFIX + r"ERROR baseplate\.server\.wsgi \[trace=-\] "
        r"unexpected exception handling GET /anything$",
        errors[0],
    )
    assert "\n".join(lines).count("Traceback (most recent call last):") == 1


def test_the_ini_logging_configuration_decides_how_view_errors_are_logged(servers, app_dir):
    write(app_dir / "custom.ini", INI + LOGGING.format(level="ERROR"))
    server = servers.start("custom.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    http_get(server.address(), "/boom", headers=trace_headers("77"))
    server.wait_for(r"^KeyError: 'the missing key'$")
    lines = output_after_stop(server)
    errors = [line for line in lines if "ERROR" in line]
    assert errors == [
        "CUSTOM ERROR baseplate.integration.pyramid trace_id=77 "
        "unexpected exception handling GET /boom"
    ]


def test_a_logger_level_in_the_ini_file_silences_view_errors(servers, app_dir):
    write(app_dir / "quiet.ini", INI + LOGGING.format(level="CRITICAL"))
    server = servers.start("quiet.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    assert http_get(server.address(), "/boom")[0] == 500
    # A second request: the first one's record, if any, would be out by now.
    assert http_get(server.address(), "/boom")[0] == 500
    text = "\n".join(output_after_stop(server))
    assert "ERROR" not in text
    assert "Traceback" not in text
    assert "the missing key" not in text


def test_a_request_that_is_not_http_is_one_info_line(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    host, _, port = server.address().rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\x00\x01\x02 not http at all\n")
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    line = server.wait_for("malformed request").string
    assert re.match(
        PREFIX + r"INFO baseplate\.server\.wsgi \[trace=-\] closing the connection from "
        r"\('127\.0\.0\.1', \d+\): malformed request: Invalid HTTP method: "
        r"'\\x00\\x01\\x02 not http at all\\n'$",
        line,
    )
    text = "\n".join(output_after_stop(server))
    assert "ERROR" not in text
    assert "Traceback" not in text
