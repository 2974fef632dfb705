"""``baseplate-serve`` as an Einhorn worker; the test plays the Einhorn master.

The master binds the listening socket and passes it to the worker as an
inherited descriptor named in the environment, and waits for the worker's
manual ACK on its command socket.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from baseplate.server import einhorn
from tests.server import child_environ, http_get, write_files

APP = """
def make_app(app_config):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served by the worker"]
    return app
"""

INI = """
[server:main]
factory = baseplate.server.wsgi

[app:main]
factory = einhornapp:make_app
"""

ACK_TIMEOUT = 30.0


@pytest.fixture
def app_dir(tmp_path):
    return write_files(tmp_path, {"einhornapp.py": APP, "app.ini": INI})


@pytest.fixture
def shared_listener():
    """The socket Einhorn binds in the master and shares with its workers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.set_inheritable(True)
    yield sock
    sock.close()


@pytest.fixture
def command_socket(tmp_path):
    """Einhorn's command socket, a listening Unix socket."""
    path = str(tmp_path / "einhorn.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    sock.settimeout(ACK_TIMEOUT)
    yield sock, path
    sock.close()


def read_message(connection: socket.socket) -> dict:
    """One newline-terminated, %-escaped message (JSON is valid YAML)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(4096)
        assert chunk, f"the command connection closed after {data!r}"
        data += chunk
    line = data.decode().rstrip("\n").replace("%0A", "\n").replace("%25", "%")
    return json.loads(line)


def einhorn_environ(fd: int, **extra: str) -> dict[str, str]:
    return child_environ(
        EINHORN_MASTER_PID=str(os.getpid()), EINHORN_FD_COUNT="1", EINHORN_FD_0=str(fd), **extra
    )


def test_worker_uses_the_inherited_socket_and_acks(
    servers, app_dir, shared_listener, command_socket
):
    listener_fd = shared_listener.fileno()
    port = shared_listener.getsockname()[1]
    command, command_path = command_socket

    server = servers.start(
        "app.ini",
        cwd=app_dir,
        env=einhorn_environ(listener_fd, EINHORN_SOCK_PATH=command_path),
        pass_fds=(listener_fd,),
    )
    connection, _ = command.accept()
    with connection:
        connection.settimeout(ACK_TIMEOUT)
        assert read_message(connection) == {"command": "worker:ack", "pid": server.pid}

    assert server.address() == f"127.0.0.1:{port}"
    server.wait_for("sent the ACK to the Einhorn master")
    assert http_get(f"127.0.0.1:{port}", "/") == (200, "served by the worker")
    assert server.stop() == 0


def test_bind_is_ignored_under_einhorn(servers, app_dir, shared_listener, command_socket):
    listener_fd = shared_listener.fileno()
    port = shared_listener.getsockname()[1]
    command, command_path = command_socket

    server = servers.start(
        "app.ini",
        "--bind",
        "127.0.0.1:1",
        cwd=app_dir,
        env=einhorn_environ(listener_fd, EINHORN_SOCK_PATH=command_path),
        pass_fds=(listener_fd,),
    )
    connection, _ = command.accept()
    connection.close()
    assert server.address() == f"127.0.0.1:{port}"
    server.wait_for("running under Einhorn: ignoring --bind 127.0.0.1:1")


def test_older_einhorn_fds_variable_and_an_inherited_command_socket(
    servers, app_dir, shared_listener
):
    listener_fd = shared_listener.fileno()
    port = shared_listener.getsockname()[1]
    master_end, worker_end = socket.socketpair()
    worker_end.set_inheritable(True)
    environ = child_environ(
        EINHORN_MASTER_PID=str(os.getpid()),
        EINHORN_FDS=str(listener_fd),
        EINHORN_SOCK_FD=str(worker_end.fileno()),
    )
    with master_end, worker_end:
        server = servers.start(
            "app.ini", cwd=app_dir, env=environ, pass_fds=(listener_fd, worker_end.fileno())
        )
        master_end.settimeout(ACK_TIMEOUT)
        assert read_message(master_end) == {"command": "worker:ack", "pid": server.pid}

    assert http_get(f"127.0.0.1:{port}", "/") == (200, "served by the worker")


def test_a_grandchild_of_einhorn_is_not_a_worker(servers, app_dir):
    """EINHORN_MASTER_PID must be the parent: otherwise the variables are not ours."""
    environ = child_environ(
        EINHORN_MASTER_PID=str(os.getppid()), EINHORN_FD_COUNT="1", EINHORN_FD_0="99"
    )
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir, env=environ)
    address = server.address()
    assert address != "127.0.0.1:0"
    assert http_get(address, "/") == (200, "served by the worker")
    assert "Einhorn" not in server.output


# -- the original's helpers, in this process ------------------------------------


@pytest.fixture
def einhorn_worker(monkeypatch):
    """This process, made an Einhorn worker by the environment its master would give it."""
    for key in list(os.environ):
        if key.startswith("EINHORN_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EINHORN_MASTER_PID", str(os.getppid()))
    return monkeypatch


def test_helpers_refuse_outside_einhorn(monkeypatch):
    monkeypatch.delenv("EINHORN_MASTER_PID", raising=False)
    assert not einhorn.is_worker()
    for helper in (einhorn.get_socket_count, einhorn.get_socket, einhorn.ack_startup):
        with pytest.raises(einhorn.NotEinhornWorker):
            helper()


def test_get_socket_gives_each_bound_socket_with_its_family(
    einhorn_worker, shared_listener, tmp_path
):
    unix_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_listener.bind(str(tmp_path / "app.sock"))
    unix_listener.listen(1)
    einhorn_worker.setenv("EINHORN_FD_COUNT", "2")
    einhorn_worker.setenv("EINHORN_FD_0", str(shared_listener.fileno()))
    einhorn_worker.setenv("EINHORN_FD_1", str(unix_listener.fileno()))
    einhorn_worker.setenv("EINHORN_FD_FAMILY_1", "AF_UNIX")
    try:
        assert einhorn.get_socket_count() == 2
        with einhorn.get_socket() as inet, einhorn.get_socket(1) as unix:
            assert inet.getsockname() == shared_listener.getsockname()
            assert unix.family == socket.AF_UNIX
            assert unix.getsockname() == str(tmp_path / "app.sock")
        for index in (-1, 2):
            with pytest.raises(IndexError):
                einhorn.get_socket(index)
        einhorn_worker.setenv("EINHORN_FD_FAMILY_1", "AF_NOPE")
        with pytest.raises(einhorn.EinhornError, match="AF_NOPE"):
            einhorn.get_socket(1)
    finally:
        unix_listener.close()


def test_ack_startup_tells_the_master(einhorn_worker, command_socket):
    listener, path = command_socket
    einhorn_worker.setenv("EINHORN_SOCK_PATH", path)
    einhorn.ack_startup()
    connection, _ = listener.accept()
    with connection:
        connection.settimeout(ACK_TIMEOUT)
        assert read_message(connection) == {"command": "worker:ack", "pid": os.getpid()}
