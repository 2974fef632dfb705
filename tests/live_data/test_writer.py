"""The live-data writer, as a process and in parts, against a real ZooKeeper."""

from __future__ import annotations

import io
import json

import pytest
from kazoo.security import make_digest_acl

from baseplate.live_data import writer as writer_module
from baseplate.live_data.writer import UnexpectedChangeError, WriterError, write_to_zookeeper
from tests.live_data.conftest import (
    CREDENTIALS_SECRET,
    DIGEST,
    ZK_PASSWORD,
    ZK_USER,
    run_writer,
    write_ini,
    write_secrets,
)
from tests.server import free_port

OLD = json.dumps({"key": "one", "other": 2}, indent=4) + "\n"
NEW = json.dumps({"key": "two", "other": 2}, indent=4) + "\n"


@pytest.fixture
def config(tmp_path, zookeeper_server):
    return write_ini(tmp_path / "writer.ini", {"zookeeper.hosts": zookeeper_server.hosts})


@pytest.fixture
def input_json(tmp_path):
    path = tmp_path / "input.json"
    path.write_text(NEW)
    return path


def test_the_diff_is_shown_and_the_data_written(zk, root, config, input_json):
    zk.create(f"{root}/node", OLD.encode())

    done = run_writer(config, input_json, f"{root}/node")

    assert done.returncode == 0, done.stderr
    assert zk.get(f"{root}/node")[0] == NEW.encode()
    assert done.stdout.splitlines() == [
        f"Writing {input_json} to ZooKeeper {root}/node...",
        f"--- {root}/node (ZooKeeper)",
        f"+++ {input_json}",
        "@@ -1,4 +1,4 @@",
        " {",
        '-    "key": "one",',
        '+    "key": "two",',
        '     "other": 2',
        " }",
        "Wrote data to ZooKeeper.",
    ]


def test_the_same_data_is_not_written_again(zk, root, config, input_json):
    zk.create(f"{root}/node", NEW.encode())
    version = zk.get(f"{root}/node")[1].version

    done = run_writer(config, input_json, f"{root}/node")

    assert done.returncode == 0, done.stderr
    assert "No changes detected. Not writing." in done.stdout
    assert zk.get(f"{root}/node")[1].version == version


def test_a_missing_node_is_not_created(zk, root, config, input_json):
    failed = run_writer(config, input_json, f"{root}/missing")

    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: the node {root}/missing does not exist: create it")
    assert failed.stderr.count("\n") == 1
    assert zk.exists(f"{root}/missing") is None


def test_credentials_from_the_secrets_file_allow_writing_a_protected_node(
    zk, root, tmp_path, zookeeper_server, input_json
):
    acl = [make_digest_acl(ZK_USER, ZK_PASSWORD, all=True)]
    zk.create(f"{root}/node", OLD.encode(), acl=acl)
    secrets = write_secrets(tmp_path / "secrets.json", {CREDENTIALS_SECRET: DIGEST})
    options = {"zookeeper.hosts": zookeeper_server.hosts, "secrets.path": secrets}

    without = write_ini(tmp_path / "without.ini", options)
    failed = run_writer(without, input_json, f"{root}/node")
    assert failed.returncode == 1
    assert failed.stderr == f"error: not allowed to read {root}/node: check zookeeper.credentials\n"

    with_credentials = write_ini(
        tmp_path / "with.ini", {**options, "zookeeper.credentials": CREDENTIALS_SECRET}
    )
    assert run_writer(with_credentials, input_json, f"{root}/node").returncode == 0
    assert zk.get(f"{root}/node")[0] == NEW.encode()


# -- failures told in one line, in this process --------------------------------


@pytest.fixture
def run_main(capsys):
    """The writer's main in this process: its exit status, standard output and error."""

    def run(*args):
        status = writer_module.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def test_an_unreadable_input_is_one_line(run_main, config, tmp_path):
    status, _out, err = run_main(config, tmp_path / "nowhere.json", "/node")

    assert status == 1
    assert err == f"error: cannot read {tmp_path / 'nowhere.json'}: No such file or directory\n"


def test_a_relative_node_path_is_one_line(run_main, config, input_json):
    status, _out, err = run_main(config, input_json, "node")

    assert status == 1
    assert err.startswith("error: node: expected an absolute node path")
    assert err.count("\n") == 1


def test_bad_configuration_is_one_line(run_main, tmp_path, input_json):
    config = write_ini(tmp_path / "writer.ini", {"zookeeper.hosts": "zk01:port"})
    status, _out, err = run_main(config, input_json, "/node")

    assert status == 1
    assert err.startswith("error: zookeeper.hosts: invalid value 'zk01:port'")
    assert err.count("\n") == 1


def test_an_unreachable_zookeeper_is_one_line(run_main, tmp_path, input_json, monkeypatch):
    monkeypatch.setattr(writer_module, "CONNECT_TIMEOUT", 0.5)
    hosts = f"127.0.0.1:{free_port()}"
    config = write_ini(tmp_path / "writer.ini", {"zookeeper.hosts": hosts})

    status, _out, err = run_main(config, input_json, "/node")

    assert status == 1
    assert err == f"error: cannot connect to ZooKeeper at {hosts} within 0.5 seconds\n"


# -- write_to_zookeeper ---------------------------------------------------------


def test_binary_data_is_written_without_a_diff(zk, root):
    zk.create(f"{root}/node", b"\xff\x00old")
    output = io.StringIO()

    assert write_to_zookeeper(zk, b"\xff\x00new", f"{root}/node", "blob", output)

    assert output.getvalue() == (
        "Skipping diff, data appears to be binary.\nWrote data to ZooKeeper.\n"
    )
    assert zk.get(f"{root}/node")[0] == b"\xff\x00new"


class ChangedBehindTheWritersBack:
    """A client whose node another writer changes right after it is read."""

    def __init__(self, client, other_data):
        self.client = client
        self.other_data = other_data

    def get(self, path):
        result = self.client.get(path)
        self.client.set(path, self.other_data)
        return result

    def set(self, *args, **kwargs):
        return self.client.set(*args, **kwargs)


def test_a_change_made_in_between_is_not_overwritten(zk, root):
    zk.create(f"{root}/node", b"original")
    racing = ChangedBehindTheWritersBack(zk, b"the other writer's")

    with pytest.raises(UnexpectedChangeError) as caught:
        write_to_zookeeper(racing, b"mine", f"{root}/node", "mine.txt", io.StringIO())

    assert isinstance(caught.value, WriterError)
    assert zk.get(f"{root}/node")[0] == b"the other writer's"
