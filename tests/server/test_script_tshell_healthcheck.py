"""``baseplate-script``, ``baseplate-tshell`` and ``baseplate-healthcheck``, run for real."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from tests.server import error_line, free_port, one_line, run_command, write, write_files

# -- baseplate-script: the reference's printer example, word for word --------

PRINTER_INI = """
[app:main]
message = Hello!

[app:bizarro]
message = !olleH
"""

PRINTER = """
def run(app_config):
    print(app_config["message"])
"""


@pytest.fixture
def printer_dir(tmp_path):
    return write_files(tmp_path, {"printer.ini": PRINTER_INI, "printer.py": PRINTER})


def test_script_runs_the_function_with_the_app_config(printer_dir):
    result = run_command("baseplate-script", "printer.ini", "printer:run", cwd=printer_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "Hello!\n", "")


def test_script_app_name_selects_another_section(printer_dir):
    result = run_command(
        "baseplate-script", "printer.ini", "--app-name=bizarro", "printer:run", cwd=printer_dir
    )
    assert (result.returncode, result.stdout) == (0, "!olleH\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["printer.ini", "printer:nope"], "the entry point: module 'printer' has no attribute"),
        (["printer.ini", "printer"], "the entry point: expected 'module:callable', not 'printer'"),
        (["printer.ini", "nosuch:run"], "the entry point: no module named 'nosuch'"),
        (["printer.ini", "printer:run", "--app-name", "x"], "printer.ini: no [app:x] section"),
        (["missing.ini", "printer:run"], "missing.ini: cannot read the file"),
    ],
)
def test_script_errors_are_one_line(printer_dir, args, expected):
    result = run_command("baseplate-script", *args, cwd=printer_dir)
    assert expected in error_line(result, "baseplate-script")


def test_script_configuration_errors_are_one_line(printer_dir):
    write(
        printer_dir / "strict.py",
        """
        from baseplate import config

        def run(app_config):
            config.parse_config(app_config, {"count": config.Integer})
        """,
    )
    result = run_command("baseplate-script", "printer.ini", "strict:run", cwd=printer_dir)
    assert error_line(result, "baseplate-script") == (
        "baseplate-script: error: printer.ini: [app:main] count: required but missing"
    )


# -- baseplate-tshell ---------------------------------------------------------

SHELL_INI = """
[app:main]
factory = shellapp:make_app
greeting = hi

[tshell]
setup = shellapp:tshell_setup
"""

SHELL_APP = """
import types

from baseplate.context import ContextFactory
from baseplate.core import Baseplate

NAME = "models module"


class ThingFactory(ContextFactory):
    def make_object_for_context(self, name, server_span):
        return f"thing for {server_span.name}"


class App:
    def __init__(self, greeting):
        self.greeting = greeting
        self.handler = types.SimpleNamespace(baseplate=Baseplate())
        self.handler.baseplate.add_to_context("thing", ThingFactory())


def make_app(app_config):
    return App(app_config["greeting"])


def tshell_setup(env, env_banner):
    import shellapp
    env["models"] = shellapp
    env_banner["models"] = "Models module"
"""

SHELL_INPUT = """
print("APP", type(app).__name__, app.greeting)
print("SPAN", context.trace.name, context.trace.trace_id > 0)
print("THING", context.thing)
print("MODELS", models.NAME)
"""


@pytest.fixture
def shell_dir(tmp_path):
    return write_files(tmp_path, {"shell.ini": SHELL_INI, "shellapp.py": SHELL_APP})


def test_tshell_provides_app_context_and_setup_objects(shell_dir):
    result = run_command("baseplate-tshell", "shell.ini", cwd=shell_dir, stdin=SHELL_INPUT)

    assert result.returncode == 0, result.stderr
    assert "APP App hi" in result.stdout
    assert "SPAN shell True" in result.stdout
    assert "THING thing for shell" in result.stdout
    assert "MODELS models module" in result.stdout


def test_tshell_banner_lists_the_available_objects(shell_dir):
    result = run_command("baseplate-tshell", "shell.ini", cwd=shell_dir, stdin="")

    banner = result.stderr.splitlines()
    assert banner[0] == "Baseplate Interactive Shell"
    assert banner[1].startswith("3.")  # the Python version
    start = banner.index("Available Objects:")
    assert [line for line in banner[start + 1 :] if line.strip()][:3] == [
        "  app       This project's app instance",
        "  context   The context for this shell instance's span",
        "  models    Models module",
    ]


def test_tshell_without_an_app_factory_still_has_a_context(shell_dir):
    write(shell_dir / "bare.ini", "[app:main]\nfoo = 1\n")
    result = run_command(
        "baseplate-tshell",
        "bare.ini",
        cwd=shell_dir,
        stdin="print('APP', app)\nprint('SPAN', context.trace.name)\n",
    )
    assert result.returncode == 0, result.stderr
    assert "APP None" in result.stdout
    assert "SPAN shell" in result.stdout


def test_tshell_bad_setup_is_one_line(shell_dir):
    write(shell_dir / "badsetup.ini", "[app:main]\n[tshell]\nsetup = shellapp:nope\n")
    result = run_command("baseplate-tshell", "badsetup.ini", cwd=shell_dir)
    line = error_line(result, "baseplate-tshell")
    assert "[tshell] setup: module 'shellapp' has no attribute 'nope'" in line


# -- baseplate-healthcheck ----------------------------------------------------

WSGI_APP = """
def make_app(app_config):
    healthy = app_config.get("healthy", "true") == "true"

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/health" and healthy:
            start_response("200 OK", [])
            return [b"ok"]
        start_response("503 Service Unavailable", [])
        return [b"not yet"]

    return app
"""

THRIFT_APP = """
from baseplate.thrift import BaseplateService


class Handler:
    def __init__(self, healthy):
        self.healthy = healthy

    def is_healthy(self):
        return self.healthy


def make_processor(app_config):
    return BaseplateService.Processor(Handler(app_config.get("healthy", "true") == "true"))
"""

HEALTH_INI = """
[server:main]
factory = baseplate.server.{kind}

[app:main]
factory = {module}
healthy = {healthy}
"""


@pytest.fixture
def health_dir(tmp_path):
    write(tmp_path / "healthwsgi.py", WSGI_APP)
    write(tmp_path / "healththrift.py", THRIFT_APP)
    for kind, module in [
        ("wsgi", "healthwsgi:make_app"),
        ("thrift", "healththrift:make_processor"),
    ]:
        for healthy in ("true", "false"):
            write(
                tmp_path / f"{kind}-{healthy}.ini",
                HEALTH_INI.format(kind=kind, module=module, healthy=healthy),
            )
    return tmp_path


def healthcheck(cwd, *args):
    return run_command("baseplate-healthcheck", *args, cwd=cwd, timeout=30)


PROTOCOLS = ["wsgi", "thrift"]
UNHEALTHY = {
    "wsgi": "GET /health answered 503 Service Unavailable",
    "thrift": "the service says it is not healthy",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_healthy_service_prints_ok(servers, health_dir, protocol):
    server = servers.start(f"{protocol}-true.ini", "--bind", "127.0.0.1:0", cwd=health_dir)
    result = healthcheck(health_dir, protocol, server.address())
    assert (result.returncode, result.stdout) == (0, "OK!\n")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_healthy_service_on_a_unix_socket(servers, health_dir, protocol):
    path = str(health_dir / f"{protocol}.sock")
    server = servers.start(f"{protocol}-true.ini", "--bind", path, cwd=health_dir)
    assert server.address() == path
    result = healthcheck(health_dir, protocol, path)
    assert (result.returncode, result.stdout) == (0, "OK!\n")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unhealthy_service_says_why(servers, health_dir, protocol):
    server = servers.start(f"{protocol}-false.ini", "--bind", "127.0.0.1:0", cwd=health_dir)
    result = healthcheck(health_dir, protocol, server.address())
    assert result.returncode == 1
    assert one_line(result.stdout) == UNHEALTHY[protocol]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_listening_is_unhealthy(health_dir, protocol):
    result = healthcheck(health_dir, protocol, f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "refused" in one_line(result.stdout)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_silent_service_times_out(health_dir, protocol):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        # Without a working --timeout the check would wait on the silent service
        # until healthcheck()'s own deadline stopped the process.
        result = healthcheck(
            health_dir, protocol, f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.5"
        )
    assert result.returncode == 1
    assert "timed out after 0.5 seconds" in one_line(result.stdout)


def test_a_bad_endpoint_is_unhealthy(health_dir):
    result = healthcheck(health_dir, "wsgi", "localhost:port")
    assert result.returncode == 1
    assert "bad endpoint 'localhost:port'" in one_line(result.stdout)


def test_thrift_check_of_an_http_port_says_it_is_not_thrift(servers, health_dir):
    server = servers.start("wsgi-true.ini", "--bind", "127.0.0.1:0", cwd=health_dir)
    address = server.address()
    result = healthcheck(health_dir, "thrift", address)
    assert result.returncode == 1
    assert one_line(result.stdout) == (
        f"{address} does not speak Thrift: it answered like an HTTP server: "
        "HTTP/1.1 400 Bad Request"
    )
    # The HTTP server took the probe for what it is: a client's garbage, one INFO line.
    line = server.wait_for("malformed request").string
    assert re.search(
        r" INFO baseplate\.server\.wsgi \[trace=-\] closing the connection from "
        r"\('127\.0\.0\.1', \d+\): malformed request: Invalid HTTP method: '\\x00",
        line,
    )
    assert server.stop() == 0
    assert " ERROR " not in server.output
    assert "Traceback" not in server.output


def test_thrift_check_of_another_protocol_shows_the_answer(health_dir):
    def answer_like_redis(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"-ERR unknown command\r\n")
            connection.recv(1024)  # until the checker hangs up

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        thread = threading.Thread(target=answer_like_redis, args=(listener,))
        thread.start()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        result = healthcheck(health_dir, "thrift", address)
        thread.join(10)
    assert result.returncode == 1
    assert one_line(result.stdout) == (
        f"{address} does not speak Thrift: its answer begins with b'-ERR unknown command'"
    )
