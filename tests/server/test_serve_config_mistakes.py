"""Configuration mistakes under ``baseplate-serve``, as a real subprocess.

A bad or missing value read by a ``*_from_config`` helper stops the server
with one line on stderr naming the key; a misspelled optional key is one
warning naming the closest known key; a lone Zipkin endpoint selects the
Zipkin exporter, and says so.
"""

from __future__ import annotations

import re

import pytest

from tests.server import LISTENING_RE, run_command, write, write_files

APP = """
from baseplate import metrics_client_from_config, tracing_client_from_config


def make_app(app_config):
    metrics_client_from_config(app_config)
    tracing_client_from_config(app_config)

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    return app
"""

SERVER = """
[DEFAULT]
shared_by_every_section = 1

[server:main]
factory = baseplate.server.wsgi
{server_options}

[app:main]
factory = configapp:make_app
metrics.namespace = configapp
tracing.service_name = configapp
"""

#: A line of the default log format, up to the logger's name.
PREFIX = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ "


@pytest.fixture
def app_dir(tmp_path):
    return write_files(tmp_path, {"configapp.py": APP})


def write_ini(app_dir, app_options: str, server_options: str = "") -> str:
    write(app_dir / "app.ini", SERVER.format(server_options=server_options) + app_options)
    return "app.ini"


def test_zipkin_exporter_without_its_endpoint_is_one_line_naming_the_key(app_dir):
    ini = write_ini(app_dir, "tracing.exporter = zipkin\n")
    done = run_command("baseplate-serve", ini, "--bind", "127.0.0.1:0", cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr == (
        "baseplate-serve: error: app.ini: [app:main] tracing.zipkin.endpoint: "
        "required by tracing.exporter = zipkin\n"
    )
    assert "Traceback" not in done.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            "tracing.zipkin.endpoint = localhost:9411\n",
            "tracing.zipkin.endpoint: invalid value 'localhost:9411': "
            "expected an http:// or https:// URL",
        ),
        (
            "tracing.zipkin.endpoint = http://localhost:9411/api/v2/spans\n"
            "tracing.otlp.endpoint = http://localhost:4318/v1/traces\n",
            "tracing.exporter: required when several destinations are set "
            "(tracing.zipkin.endpoint and tracing.otlp.endpoint)",
        ),
        (
            "metrics.endpoint = nowhere\n",
            "metrics.endpoint: invalid value 'nowhere': expected host:port or a socket path",
        ),
    ],
    ids=["bad-zipkin-url", "two-destinations", "bad-metrics-endpoint"],
)
def test_other_bad_values_are_one_line_too(app_dir, options, message):
    ini = write_ini(app_dir, options)
    done = run_command("baseplate-serve", ini, "--bind", "127.0.0.1:0", cwd=app_dir)
    assert done.returncode == 1
    assert done.stderr == f"baseplate-serve: error: app.ini: [app:main] {message}\n"


def started_and_stopped(servers, ini, app_dir):
    """A server that started on ``ini``, listened, and stopped cleanly: its output is whole."""
    server = servers.start(ini, "--bind", "127.0.0.1:0", cwd=app_dir)
    server.wait_for(LISTENING_RE)
    assert server.stop() == 0
    return server


def test_a_misspelled_server_option_is_one_warning_naming_the_right_one(servers, app_dir):
    ini = write_ini(app_dir, "", server_options="stop_timout = 30")
    server = started_and_stopped(servers, ini, app_dir)
    warnings = [line for line in server.lines if "WARNING" in line]
    assert len(warnings) == 1, server.output
    assert re.match(
        PREFIX + r"WARNING baseplate\.config\.unknown_keys \[trace=-\] "
        r"unknown configuration key stop_timout: did you mean stop_timeout\?$",
        warnings[0],
    )
    # [DEFAULT]'s options are in every section: they are not the server's typos.
    assert "shared_by_every_section" not in server.output


def test_a_misspelled_app_key_under_a_baseplate_prefix_is_one_warning(servers, app_dir):
    ini = write_ini(app_dir, "metrics.namspace = oops\ntracing.smaple_rate = 50%\n")
    server = started_and_stopped(servers, ini, app_dir)
    warnings = [line for line in server.lines if "WARNING" in line]
    assert [line.split("[trace=-] ", 1)[1] for line in warnings] == [
        "unknown configuration key metrics.namspace: did you mean metrics.namespace?",
        "unknown configuration key tracing.smaple_rate: did you mean tracing.sample_rate?",
    ], server.output


def test_a_lone_zipkin_endpoint_selects_the_zipkin_exporter_and_says_so(servers, app_dir):
    ini = write_ini(app_dir, "tracing.zipkin.endpoint = http://127.0.0.1:9/api/v2/spans\n")
    server = started_and_stopped(servers, ini, app_dir)
    infos = [line for line in server.lines if "baseplate.diagnostics.tracing" in line]
    assert len(infos) == 1, server.output
    assert re.match(
        PREFIX + r"INFO baseplate\.diagnostics\.tracing \[trace=-\] "
        r"tracing\.exporter is not set: using zipkin, as tracing\.zipkin\.endpoint is set$",
        infos[0],
    )
