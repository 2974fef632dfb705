"""The live-data watcher, as a process and in parts, against a real ZooKeeper."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import threading
import time

import pytest
from kazoo.security import make_digest_acl

from baseplate.live_data import watcher as watcher_module
from baseplate.live_data.watcher import NodeWatcher, WatchedNode, watch_zookeeper_nodes
from tests._helpers import wait_until
from tests.live_data.conftest import (
    CREDENTIALS_SECRET,
    DIGEST,
    ZK_PASSWORD,
    ZK_USER,
    connected_client,
    session_on,
    write_ini,
    write_secrets,
)
from tests.server import free_port


def read(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def holds(path, data):
    """A condition: the file at ``path`` holds ``data`` (None: there is no file)."""
    return lambda: read(path) == data


def temporary_files(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# -- the process --------------------------------------------------------------


@pytest.fixture
def watcher_config(tmp_path, zookeeper_server, root):
    """An INI file watching ``<root>/a`` into ``files/a.json``, and that file's path."""
    (tmp_path / "files").mkdir()
    dest = tmp_path / "files" / "a.json"
    config = write_ini(
        tmp_path / "watcher.ini",
        {
            "zookeeper.hosts": zookeeper_server.hosts,
            "nodes.a.source": f"{root}/a",
            "nodes.a.dest": dest,
            "nodes.a.mode": "0640",
        },
    )
    return config, dest


def test_every_change_reaches_the_file(zk, root, watcher_config, start_watcher):
    config, dest = watcher_config
    zk.create(f"{root}/a", b'{"version": 1}')

    watcher = start_watcher(config)
    wait_until(holds(dest, b'{"version": 1}'), "the first version in the file")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640

    for version in range(2, 6):
        zk.set(f"{root}/a", b'{"version": %d}' % version)
        wait_until(holds(dest, b'{"version": %d}' % version), f"version {version} in the file")

    assert watcher.stop() == 0
    assert "stopped by SIGTERM" in watcher.log()
    assert temporary_files(dest.parent) == []


def test_a_restarted_watcher_catches_up_with_what_changed_while_it_was_away(
    zk, root, watcher_config, start_watcher
):
    config, dest = watcher_config
    zk.create(f"{root}/a", b"before")
    first = start_watcher(config)
    wait_until(holds(dest, b"before"), "the data in the file")
    assert first.stop() == 0

    zk.set(f"{root}/a", b"while away")
    assert read(dest) == b"before"  # nobody is watching

    start_watcher(config)
    wait_until(holds(dest, b"while away"), "the change made while away")


def test_a_deleted_node_removes_the_file_until_it_is_created_again(
    zk, root, watcher_config, start_watcher
):
    config, dest = watcher_config
    zk.create(f"{root}/a", b"first life")
    watcher = start_watcher(config)
    wait_until(holds(dest, b"first life"), "the data in the file")

    zk.delete(f"{root}/a")
    wait_until(holds(dest, None), "the file removed")

    zk.create(f"{root}/a", b"second life")
    wait_until(holds(dest, b"second life"), "the recreated node's data")
    assert f"node {root}/a does not exist: removed" in watcher.log()


def test_a_node_not_created_yet_is_written_once_it_is(zk, root, watcher_config, start_watcher):
    config, dest = watcher_config
    watcher = start_watcher(config)
    watcher.wait_for_log(f"node {root}/a does not exist (yet)")
    assert read(dest) is None

    zk.create(f"{root}/a", b"born late")
    wait_until(holds(dest, b"born late"), "the new node's data")


def test_an_empty_node_is_an_empty_file(zk, root, watcher_config, start_watcher):
    config, dest = watcher_config
    zk.create(f"{root}/a", b"")
    start_watcher(config)
    wait_until(holds(dest, b""), "an empty file")


def test_several_nodes_each_go_to_their_file(zk, root, tmp_path, zookeeper_server, start_watcher):
    nodes = {name: tmp_path / f"{name}.txt" for name in ("one", "two", "three")}
    options = {"zookeeper.hosts": zookeeper_server.hosts}
    for name, dest in nodes.items():
        zk.create(f"{root}/{name}", name.encode())
        options |= {f"nodes.{name}.source": f"{root}/{name}", f"nodes.{name}.dest": dest}
    start_watcher(write_ini(tmp_path / "watcher.ini", options))

    for name, dest in nodes.items():
        wait_until(holds(dest, name.encode()), f"{dest.name} written")
    zk.set(f"{root}/two", b"changed")
    wait_until(holds(nodes["two"], b"changed"), "two.txt changed")
    assert read(nodes["one"]) == b"one"


def node_a_config(tmp_path, hosts, dest):
    """A watcher's INI file for the one node ``/a``, written to ``dest``."""
    return write_ini(
        tmp_path / "watcher.ini",
        {"zookeeper.hosts": hosts, "nodes.a.source": "/a", "nodes.a.dest": dest},
    )


def test_zookeeper_restart_keeps_the_files_and_the_watch(tmp_path, own_zookeeper, start_watcher):
    dest = tmp_path / "a.json"
    with session_on(own_zookeeper.hosts) as setup:
        setup.create("/a", b"before the restart")
    config = node_a_config(tmp_path, own_zookeeper.hosts, dest)
    watcher = start_watcher(config)
    wait_until(holds(dest, b"before the restart"), "the data in the file")

    own_zookeeper.stop()
    watcher.wait_for_log("connection to ZooKeeper lost")
    assert read(dest) == b"before the restart"  # the last good file stays

    own_zookeeper.start()
    with session_on(own_zookeeper.hosts) as client:
        client.set("/a", b"after the restart")
        wait_until(holds(dest, b"after the restart"), "a change made after the restart")
    assert watcher.process.poll() is None


def test_a_watcher_started_before_zookeeper_waits_for_it(tmp_path, own_zookeeper, start_watcher):
    dest = tmp_path / "a.json"
    with session_on(own_zookeeper.hosts) as setup:
        setup.create("/a", b"worth the wait")
    own_zookeeper.stop()
    config = node_a_config(tmp_path, own_zookeeper.hosts, dest)

    watcher = start_watcher(config)
    watcher.wait_for_log("connecting to ZooKeeper")
    own_zookeeper.start()
    wait_until(holds(dest, b"worth the wait"), "the data once ZooKeeper is up")
    assert watcher.stop() == 0


def test_a_watcher_still_connecting_stops_on_sigterm(tmp_path, start_watcher):
    nothing_listens = f"127.0.0.1:{free_port()}"
    config = write_ini(
        tmp_path / "watcher.ini",
        {
            "zookeeper.hosts": nothing_listens,
            "nodes.a.source": "/a",
            "nodes.a.dest": tmp_path / "a",
        },
    )
    watcher = start_watcher(config)
    watcher.wait_for_log("connecting to ZooKeeper")

    assert watcher.stop() == 0


def test_credentials_from_the_secrets_file_read_a_protected_node(
    zk, root, tmp_path, zookeeper_server, start_watcher
):
    zk.create(f"{root}/a", b"members only", acl=[make_digest_acl(ZK_USER, ZK_PASSWORD, read=True)])
    secrets = write_secrets(tmp_path / "secrets.json", {CREDENTIALS_SECRET: DIGEST})
    dest = tmp_path / "a.json"
    options = {
        "zookeeper.hosts": zookeeper_server.hosts,
        "nodes.a.source": f"{root}/a",
        "nodes.a.dest": dest,
        "secrets.path": secrets,
    }

    with_credentials = write_ini(
        tmp_path / "with.ini", {**options, "zookeeper.credentials": CREDENTIALS_SECRET}
    )
    start_watcher(with_credentials)
    wait_until(holds(dest, b"members only"), "the protected node's data")

    without = start_watcher(write_ini(tmp_path / "without.ini", options))
    assert without.process.wait(30) == 1
    assert "not allowed to read every node" in without.log()


# -- its configuration ----------------------------------------------------------


@pytest.fixture
def run_main(caplog):
    """The watcher's main in this process, for what ends before it connects.

    Returns the exit status and the errors logged.
    """
    kazoo_logger = logging.getLogger("kazoo")
    kazoo_level = kazoo_logger.level

    def run(config_path):
        status = watcher_module.main([str(config_path)])
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        return status, errors

    yield run
    kazoo_logger.setLevel(kazoo_level)  # main() quiets kazoo, as a process would


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nodes.a.source": "/a", "nodes.a.dest": "{tmp}/a"}, "zookeeper.hosts: required"),
        ({"zookeeper.hosts": "zk01:2181"}, "nodes: no node to watch"),
        (
            {"zookeeper.hosts": "zk01:2181", "nodes.a.source": "a", "nodes.a.dest": "{tmp}/a"},
            "nodes.a.source: invalid value 'a': expected an absolute node path",
        ),
        (
            {"zookeeper.hosts": "zk01:2181", "nodes.a.source": "/a"},
            "nodes.a.dest: required but missing",
        ),
        (
            {"zookeeper.hosts": "zk01:2181", "nodes.a.source": "/a", "nodes.a.dest": "{tmp}/no/a"},
            "nodes.a.dest: the directory of {tmp}/no/a does not exist",
        ),
        (
            {
                "zookeeper.hosts": "zk01:2181",
                "nodes.a.source": "/a",
                "nodes.a.dest": "{tmp}/a",
                "nodes.b.source": "/b",
                "nodes.b.dest": "{tmp}/a",
            },
            "nodes.b.dest: {tmp}/a is also nodes.a.dest",
        ),
        (
            {
                "zookeeper.hosts": "zk01:2181",
                "nodes.a.source": "/a",
                "nodes.a.dest": "{tmp}/a",
                "nodes.a.mode": "rw-r--r--",
            },
            "nodes.a.mode: invalid value 'rw-r--r--'",
        ),
        (
            {
                "zookeeper.hosts": "zk01:2181",
                "nodes.a.source": "/a",
                "nodes.a.dest": "{tmp}/a",
                "nodes.a.owner": "no-such-user-here",
            },
            "nodes.a.owner: invalid value 'no-such-user-here': no such user",
        ),
        (
            {
                "zookeeper.hosts": "zk01:2181",
                "nodes.a.source": "/a",
                "nodes.a.dest": "{tmp}/a",
                "zookeeper.credentials": "secret/zk",
                "secrets.path": "{tmp}/secrets.json",
            },
            "secret not found: secret/zk",
        ),
    ],
)
def test_bad_configuration_exits_with_one_line(run_main, tmp_path, options, message):
    write_secrets(tmp_path / "secrets.json", {})
    options = {key: value.format(tmp=tmp_path) for key, value in options.items()}
    status, errors = run_main(write_ini(tmp_path / "watcher.ini", options))

    assert status == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(message.format(tmp=tmp_path))
    assert "\n" not in errors[0]


def test_a_file_without_the_section_exits_with_one_line(run_main, tmp_path):
    config = write_ini(tmp_path / "watcher.ini", {"hosts": "x"}, section="app:main")
    status, errors = run_main(config)

    assert status == 1
    assert errors == [f"{config}: no [live-data] section"]


def test_a_secrets_file_that_never_comes_exits_with_one_line(run_main, tmp_path, monkeypatch):
    monkeypatch.setattr(watcher_module, "SECRETS_TIMEOUT", 0.2)
    options = {
        "zookeeper.hosts": "zk01:2181",
        "zookeeper.credentials": "secret/zk",
        "secrets.path": tmp_path / "never-written.json",
        "nodes.a.source": "/a",
        "nodes.a.dest": tmp_path / "a",
    }
    status, errors = run_main(write_ini(tmp_path / "watcher.ini", options))

    assert status == 1
    assert len(errors) == 1
    assert "never-written.json" in errors[0]
    assert "\n" not in errors[0]


# -- its parts ----------------------------------------------------------------


@pytest.fixture
def node(tmp_path):
    return WatchedNode(name="a", source="/a", dest=str(tmp_path / "a.json"), mode=0o444)


def test_each_change_replaces_the_file_with_a_new_one(node, tmp_path):
    watcher = NodeWatcher(node)
    watcher.on_change(b"one", None)
    first_inode = os.stat(node.dest).st_ino
    with open(node.dest, "rb") as reader_of_the_old_version:
        watcher.on_change(b"two", None)
        # A reader that opened the old file still reads all of it.
        assert reader_of_the_old_version.read() == b"one"

    assert read_path(node.dest) == b"two"
    assert os.stat(node.dest).st_ino != first_inode
    assert stat.S_IMODE(os.stat(node.dest).st_mode) == 0o444
    assert temporary_files(tmp_path) == []


def read_path(path):
    with open(path, "rb") as file:
        return file.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_owner_and_group_are_applied_each_on_its_own(tmp_path):
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    owned = WatchedNode(name="a", source="/a", dest=str(tmp_path / "a"), owner=nobody)
    grouped = WatchedNode(name="b", source="/b", dest=str(tmp_path / "b"), group=nogroup)
    both = WatchedNode(name="c", source="/c", dest=str(tmp_path / "c"), owner=nobody, group=nogroup)
    for node in (owned, grouped, both):
        NodeWatcher(node).on_change(b"data", None)

    assert (os.stat(owned.dest).st_uid, os.stat(owned.dest).st_gid) == (nobody, os.getegid())
    assert (os.stat(grouped.dest).st_uid, os.stat(grouped.dest).st_gid) == (os.geteuid(), nogroup)
    assert (os.stat(both.dest).st_uid, os.stat(both.dest).st_gid) == (nobody, nogroup)


def test_a_failed_write_keeps_the_old_file_and_is_tried_again_at_the_heartbeat(
    node, tmp_path, monkeypatch, caplog
):
    watcher = NodeWatcher(node)
    watcher.on_change(b"good", None)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(watcher_module, "write_atomically", disk_full)
        watcher.on_change(b"better", None)
        assert read_path(node.dest) == b"good"
        assert "No space left on device" in caplog.text

    watcher.heartbeat()
    assert read_path(node.dest) == b"better"


def test_the_heartbeat_touches_the_file_or_writes_it_again(node):
    watcher = NodeWatcher(node)
    watcher.heartbeat()  # nothing known yet: nothing to touch
    assert not os.path.exists(node.dest)

    watcher.on_change(b"data", None)
    os.utime(node.dest, (1000, 1000))
    watcher.heartbeat()
    assert os.stat(node.dest).st_mtime > 1000

    os.unlink(node.dest)
    watcher.heartbeat()
    assert read_path(node.dest) == b"data"

    watcher.on_change(None, None)  # the node is gone: so is the file, for good
    watcher.heartbeat()
    assert not os.path.exists(node.dest)


@pytest.fixture
def heartbeating(own_zookeeper, tmp_path):
    """watch_zookeeper_nodes in a thread, heartbeating every 50 ms, on a server the test owns."""
    client = connected_client(own_zookeeper.hosts, timeout=1.0)
    client.create("/a", b"alive")
    node = WatchedNode(name="a", source="/a", dest=str(tmp_path / "a.json"))
    stop = threading.Event()
    loop = threading.Thread(target=watch_zookeeper_nodes, args=(client, [node], stop, 0.05))
    loop.start()
    wait_until(lambda: os.path.exists(node.dest), "the file written")
    yield client, node
    stop.set()
    loop.join(10)
    client.stop()
    client.close()


def test_the_heartbeat_runs_only_while_connected(heartbeating, own_zookeeper):
    client, node = heartbeating

    def mtime():
        return os.stat(node.dest).st_mtime

    os.utime(node.dest, (1000, 1000))
    wait_until(lambda: mtime() > 1000, "a heartbeat")

    own_zookeeper.stop()
    wait_until(lambda: not client.connected, "the client disconnected")
    os.utime(node.dest, (1000, 1000))
    time.sleep(0.5)  # ten heartbeat intervals
    assert mtime() == 1000  # an old file shows that nobody vouches for it

    own_zookeeper.start()
    wait_until(lambda: mtime() > 1000, "heartbeats again once reconnected")
    assert read_path(node.dest) == b"alive"


def test_a_lost_session_is_replaced_and_the_watch_set_again(heartbeating, own_zookeeper):
    client, node = heartbeating
    old_session = client.client_id

    # The classic way to expire a session: a second client takes it over and closes it.
    intruder = connected_client(own_zookeeper.hosts, client_id=old_session)
    intruder.stop()
    intruder.close()
    wait_until(lambda: client.connected and client.client_id != old_session, "a new session")

    with session_on(own_zookeeper.hosts) as writer:
        writer.set("/a", b"seen by the new session")
    wait_until(lambda: read_path(node.dest) == b"seen by the new session", "the change")
