"""``baseplate-serve`` with the gevent WSGI server, as a real subprocess."""

from __future__ import annotations

import concurrent.futures
import signal
import socket

import pytest

from tests._helpers import wait_until
from tests.server import (
    STOP_TIMEOUT,
    answers,
    error_line,
    http_connection,
    http_get,
    run_command,
    write,
    write_files,
)

APP = """
import logging
import os
import threading
import time

from baseplate import config

VERSION = "first"
log = logging.getLogger("wsgiapp")


def make_app(app_config):
    cfg = config.parse_config(
        app_config,
        {
            "message": config.String,
            "delay": config.Optional(config.Float, default=1.0),
            "healthy": config.Optional(config.Boolean, default=True),
        },
    )

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        status, body = "200 OK", cfg.message
        if path == "/slow":
            delay = float(environ["QUERY_STRING"] or cfg.delay)
            log.info("slow request started")
            time.sleep(delay)
            log.info("slow request finished")
            body = f"slept {delay}"
        elif path == "/version":
            body = VERSION
        elif path == "/health" and not cfg.healthy:
            status, body = "503 Service Unavailable", "sick"
        elif path == "/log":
            log.info("hello from the app")
        elif path == "/whoami":
            body = f"{os.getpid()} {threading.current_thread().name}"
        elif path == "/span-lock":
            from gevent import monkey
            from opentelemetry.sdk.trace import TracerProvider

            span = TracerProvider().get_tracer("app").start_span("check")
            native_lock = type(monkey.get_original("_thread", "allocate_lock")())
            body = "native" if type(span._lock) is native_lock else type(span._lock).__name__
        start_response(status, [("Content-Type", "text/plain")])
        return [body.encode()]

    return app
"""

HANDLER = """
from gevent.pywsgi import WSGIHandler


class TaggingHandler(WSGIHandler):
    def start_response(self, status, headers, exc_info=None):
        headers = [*headers, ("X-Handled-By", "TaggingHandler")]
        return super().start_response(status, headers, exc_info)
"""

INI = """
[server:main]
factory = baseplate.server.wsgi
stop_timeout = {stop_timeout}

[app:main]
factory = wsgiapp:make_app
message = Hello, world!
"""


@pytest.fixture
def app_dir(tmp_path):
    files = {"wsgiapp.py": APP, "handlers.py": HANDLER, "app.ini": INI.format(stop_timeout=10)}
    return write_files(tmp_path, files)


def test_serves_http_on_a_kernel_picked_port(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    assert address.startswith("127.0.0.1:")
    assert server.port() > 0

    assert http_get(address, "/") == (200, "Hello, world!")
    assert server.stop() == 0


def test_opentelemetry_spans_keep_native_locks_under_gevent(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    assert http_get(server.address(), "/span-lock") == (200, "native")
    assert server.stop() == 0


def test_serves_http_on_a_unix_socket(servers, app_dir):
    path = str(app_dir / "serve.sock")
    server = servers.start("app.ini", "--bind", path, cwd=app_dir)
    assert server.address() == path

    assert http_get(path, "/") == (200, "Hello, world!")
    assert server.stop() == 0


def test_a_stale_unix_socket_file_is_replaced(servers, app_dir):
    path = app_dir / "serve.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, with nobody listening

    server = servers.start("app.ini", "--bind", str(path), cwd=app_dir)
    server.address()
    assert http_get(str(path), "/") == (200, "Hello, world!")


def test_keep_alive_connections_serve_several_requests(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    connection = http_connection(server.address())
    try:
        for _ in range(3):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"Hello, world!")
    finally:
        connection.close()


def test_app_logs_go_to_stdout_with_the_default_format(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    assert http_get(server.address(), "/log")[0] == 200

    line = server.wait_for(r"hello from the app").string
    assert " INFO wsgiapp [trace=-] hello from the app" in line
    assert not server.wait_for("listening").string.startswith("DEBUG")


def test_debug_flag_logs_at_debug_level(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", "--debug", cwd=app_dir)
    assert http_get(server.address(), "/")[0] == 200
    # the access log is written at DEBUG level
    server.wait_for(r" DEBUG baseplate\.server\.wsgi\.access .*GET / HTTP/1\.1\S* 200")


def test_logging_configuration_in_the_ini_file_overrides_the_default(servers, app_dir):
    ini = INI.format(stop_timeout=1) + (
        "\n[loggers]\nkeys = root\n\n[handlers]\nkeys = out\n\n[formatters]\nkeys = plain\n\n"
        "[logger_root]\nlevel = INFO\nhandlers = out\n\n"
        "[handler_out]\nclass = StreamHandler\nargs = (sys.stdout,)\nformatter = plain\n\n"
        "[formatter_plain]\nformat = CUSTOM %(levelname)s %(name)s trace_id=%(trace_id)s "
        "%(message)s\n"
    )
    write(app_dir / "logging.ini", ini)
    server = servers.start("logging.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    assert http_get(server.address(), "/log")[0] == 200
    server.wait_for(r"^CUSTOM INFO wsgiapp trace_id= hello from the app$")


def test_max_concurrency_and_handler_options(servers, app_dir):
    write(
        app_dir / "options.ini",
        """
        [server:main]
        factory = baseplate.server.wsgi
        max_concurrency = 1
        handler = handlers.TaggingHandler

        [app:main]
        factory = wsgiapp:make_app
        message = limited
        """,
    )
    server = servers.start("options.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(http_get, address, "/slow?1.5")
        server.wait_for("slow request started")
        fast = pool.submit(http_get, address, "/log")
        assert fast.result(timeout=15) == (200, "limited")
        assert slow.result(timeout=15) == (200, "slept 1.5")
    # the second connection was accepted only once the first was done
    finished = server.wait_for("slow request finished").string
    fast_served = server.wait_for("hello from the app").string
    assert server.lines.index(finished) < server.lines.index(fast_served)

    connection = http_connection(address)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.getheader("X-Handled-By") == "TaggingHandler"
    response.read()
    connection.close()


def test_graceful_stop_finishes_the_request_in_progress(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    host, port = "127.0.0.1", server.port()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(http_get, address, "/slow?1.5")
        server.wait_for("slow request started")
        server.send_signal(signal.SIGTERM)
        server.wait_for(r"\bstopping$")

        def refused():
            try:
                socket.create_connection((host, port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, "the listener closed")
        assert slow.result(timeout=15) == (200, "slept 1.5")
    assert server.wait() == 0
    assert "Traceback" not in server.output


def test_graceful_stop_does_not_wait_for_idle_keep_alive_connections(servers, app_dir):
    # A stop that waited for the idle connection would last the whole
    # stop_timeout, longer than server.stop() waits for the exit.
    write(app_dir / "long.ini", INI.format(stop_timeout=int(STOP_TIMEOUT * 3)))
    server = servers.start("long.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    connection = http_connection(server.address())
    try:
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"Hello, world!"
        assert server.stop() == 0
    finally:
        connection.close()


def test_stop_timeout_bounds_the_wait_for_slow_requests(servers, app_dir):
    write(app_dir / "short.ini", INI.format(stop_timeout="500 milliseconds"))
    server = servers.start("short.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # The request lasts longer than server.stop() waits for the exit.
        slow = pool.submit(http_get, address, f"/slow?{STOP_TIMEOUT * 3:g}")
        server.wait_for("slow request started")
        assert server.stop() == 0
        # the request cut short is answered 500 by gevent, or the connection just closes
        try:
            status, _ = slow.result(timeout=15)
        except OSError:
            pass
        else:
            assert status == 500


def test_sigint_also_stops_gracefully(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    server.address()
    assert server.stop(signal.SIGINT) == 0


def test_sigusr1_logs_the_stack_of_every_thread_and_greenlet(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(http_get, address, "/slow?1")
        server.wait_for("slow request started")
        start = server.line_count()
        server.send_signal(signal.SIGUSR1)
        server.wait_for(
            r"WARNING baseplate\.server .*stacks of every thread and greenlet", start=start
        )
        server.wait_for(r"\* Threads", start=start)
        server.wait_for(r"\* Greenlets", start=start)
        # the greenlet handling the slow request is caught sleeping in the app
        server.wait_for(r"wsgiapp\.py.*in app", start=start)
        assert slow.result(timeout=15) == (200, "slept 1.0")
    # still serving afterwards
    assert http_get(address, "/")[0] == 200
    assert server.stop() == 0


def test_reload_restarts_on_a_source_change(servers, app_dir):
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", "--reload", cwd=app_dir)
    address = server.address()
    assert http_get(address, "/version") == (200, "first")

    source = app_dir / "wsgiapp.py"
    source.write_text(source.read_text().replace('VERSION = "first"', 'VERSION = "second one"'))
    server.wait_for(r"wsgiapp\.py changed; restarting")

    # the listener is handed over, so the address is the same after the restart
    wait_until(lambda: answers(address, "/version", (200, "second one")), "the new version")
    assert server.stop() == 0


def test_reload_restarts_on_an_ini_change_and_after_a_broken_start(servers, app_dir):
    path = str(app_dir / "reload.sock")
    server = servers.start("app.ini", "--bind", path, "--reload", cwd=app_dir)
    assert server.address() == path

    ini = app_dir / "app.ini"
    good = ini.read_text()
    ini.write_text(good.replace("factory = wsgiapp:make_app", "factory = wsgiapp:nope"))
    server.wait_for(r"app\.ini changed; restarting")
    mark = server.wait_for(r"has no attribute 'nope'")
    assert mark
    server.wait_for("waiting for a file to change")

    ini.write_text(good.replace("Hello, world!", "Hello again"))

    wait_until(lambda: answers(path, "/", (200, "Hello again")), "the new configuration")
    assert server.stop() == 0


BAD_INI_CASES = {
    "missing server section": (
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\n",
        "no [server:main] section",
    ),
    "missing app section": (
        "[server:main]\nfactory = baseplate.server.wsgi\n",
        "no [app:main] section",
    ),
    "missing server factory": (
        "[server:main]\nstop_timeout = 1\n[app:main]\nfactory = wsgiapp:make_app\n",
        "[server:main] factory: required but missing",
    ),
    "missing app factory": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nmessage = x\n",
        "[app:main] factory: required but missing",
    ),
    "no such module": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = nosuchmodule:app\n",
        "[app:main] factory: no module named 'nosuchmodule'",
    ),
    "no such server module": (
        "[server:main]\nfactory = baseplate.server.nope\n[app:main]\nfactory = wsgiapp:make_app\n",
        "[server:main] factory: no module named 'baseplate.server.nope'",
    ),
    "no such callable": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = wsgiapp:nope\n",
        "[app:main] factory: module 'wsgiapp' has no attribute 'nope'",
    ),
    "not callable": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = wsgiapp:VERSION\n",
        "[app:main] factory: wsgiapp:VERSION is not callable",
    ),
    "malformed factory": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = wsgiapp:a b\n",
        "[app:main] factory: expected 'module:callable'",
    ),
    "bad max_concurrency": (
        "[server:main]\nfactory = baseplate.server.wsgi\nmax_concurrency = lots\n"
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\n",
        "[server:main] max_concurrency: invalid value 'lots'",
    ),
    "zero max_concurrency": (
        "[server:main]\nfactory = baseplate.server.wsgi\nmax_concurrency = 0\n"
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\n",
        "[server:main] max_concurrency: invalid value '0': must be at least 1",
    ),
    "negative stop_timeout": (
        "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = -3\n"
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\n",
        "[server:main] stop_timeout: invalid value '-3': must not be negative",
    ),
    "bad handler": (
        "[server:main]\nfactory = baseplate.server.wsgi\nhandler = os.path.join\n"
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\n",
        "[server:main] handler: invalid value 'os.path.join'",
    ),
    "bad app option": (
        "[server:main]\nfactory = baseplate.server.wsgi\n"
        "[app:main]\nfactory = wsgiapp:make_app\nmessage = x\ndelay = soon\n",
        "[app:main] delay: invalid value 'soon': not a number",
    ),
    "not an ini file": ("just some text\n", "line 1: text before the first [section]"),
    "duplicate section": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[server:main]\nfactory = x\n",
        "line 3: [server:main] appears twice",
    ),
    "bad logging configuration": (
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = wsgiapp:make_app\n"
        "message = x\n[loggers]\nkeys = root\n",
        "bad logging configuration",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INI_CASES))
def test_bad_ini_files_exit_with_one_clear_line(app_dir, case):
    text, expected = BAD_INI_CASES[case]
    (app_dir / "bad.ini").write_text(text)

    result = run_command("baseplate-serve", "bad.ini", "--bind", "127.0.0.1:0", cwd=app_dir)

    assert result.stdout == ""
    line = error_line(result, "baseplate-serve")
    assert line.startswith("baseplate-serve: error: bad.ini: ")
    assert expected in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.ini"], "missing.ini: cannot read the file: No such file or directory"),
        (["app.ini", "--server-name", "other"], "no [server:other] section"),
        (["app.ini", "--app-name", "other"], "no [app:other] section"),
        (["app.ini", "--bind", "127.0.0.1:http"], "--bind 127.0.0.1:http: port must be a number"),
    ],
)
def test_bad_arguments_exit_with_one_clear_line(app_dir, args, expected):
    result = run_command("baseplate-serve", *args, cwd=app_dir)
    assert expected in error_line(result, "baseplate-serve")


def test_an_address_in_use_exits_with_one_clear_line(app_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command(
            "baseplate-serve", "app.ini", "--bind", f"127.0.0.1:{port}", cwd=app_dir
        )
    line = error_line(result, "baseplate-serve")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line


def test_named_sections(servers, app_dir):
    write(
        app_dir / "named.ini",
        """
        [server:alt]
        factory = baseplate.server.wsgi:make_server

        [app:alt]
        factory = wsgiapp:make_app
        message = alternative
        """,
    )
    server = servers.start(
        "named.ini",
        "--server-name",
        "alt",
        "--app-name",
        "alt",
        "--bind",
        "127.0.0.1:0",
        cwd=app_dir,
    )
    assert http_get(server.address(), "/") == (200, "alternative")
