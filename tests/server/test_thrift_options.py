"""The Thrift server's limits and timeouts, as read from the ``[server:main]`` section."""

from __future__ import annotations

import socket

import pytest

from baseplate.config import ConfigurationError
from baseplate.server import thrift
from tests.server import error_line, run_command, write


class Processor:
    def process(self, iprot, oprot):
        raise AssertionError("not called: the server is never started")


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def make_server(listener, **options):
    return thrift.make_server(
        {"factory": "baseplate.server.thrift", **options}, listener, Processor()
    )


def test_defaults_bound_partial_calls_and_idle_connections_generously(listener):
    server = make_server(listener)
    assert server.max_frame_size == 16_384_000
    assert server.read_timeout == 10.0
    assert server.idle_timeout == 600.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.5", 2.5), ("2 seconds", 2.0), ("5 minutes", 300.0), ("0", None), ("0 seconds", None)],
)
def test_timeouts_are_seconds_or_timespans_and_zero_turns_them_off(listener, text, expected):
    server = make_server(listener, read_timeout=text, idle_timeout=text)
    assert (server.read_timeout, server.idle_timeout) == (expected, expected)


@pytest.mark.parametrize("option", ["read_timeout", "idle_timeout"])
@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("soon", "expected seconds, such as '30' or '30 seconds'"),
        ("-1", "must not be negative"),
        ("nan", "must not be negative"),
    ],
)
def test_bad_timeouts_are_configuration_errors_naming_the_option(listener, option, text, error):
    with pytest.raises(ConfigurationError) as caught:
        make_server(listener, **{option: text})
    assert caught.value.key == option
    assert error in caught.value.error


def test_a_bad_timeout_stops_baseplate_serve_with_one_line(tmp_path):
    write(
        tmp_path / "idle_app.py",
        "class P:\n    def process(self, i, o): ...\n\n\ndef make_app(c):\n    return P()\n",
    )
    write(
        tmp_path / "bad.ini",
        """
        [server:main]
        factory = baseplate.server.thrift
        read_timeout = a while

        [app:main]
        factory = idle_app
        """,
    )
    result = run_command("baseplate-serve", "bad.ini", "--bind", "127.0.0.1:0", cwd=tmp_path)
    line = error_line(result, "baseplate-serve")
    assert "bad.ini: [server:main] read_timeout: invalid value 'a while'" in line
