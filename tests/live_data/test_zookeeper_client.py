"""``zookeeper_client_from_config`` against a real ZooKeeper."""

from __future__ import annotations

import pytest
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import make_digest_acl

from baseplate.config import ConfigurationError
from baseplate.live_data import zookeeper_client_from_config
from baseplate.secrets import SecretNotFoundError, SecretsStore
from tests.live_data.conftest import CREDENTIALS_SECRET, ZK_PASSWORD, ZK_USER, write_secrets


@pytest.fixture
def secrets(tmp_path) -> SecretsStore:
    path = write_secrets(
        tmp_path / "secrets.json",
        {CREDENTIALS_SECRET: f"{ZK_USER}:{ZK_PASSWORD}", "secret/not-credentials": "hunter2"},
    )
    return SecretsStore(str(path))


@pytest.fixture
def client_of(secrets):
    """``zookeeper_client_from_config`` for an app config; each client started, stopped after."""
    made = []

    def make(app_config, read_only=None):
        client = zookeeper_client_from_config(secrets, app_config, read_only=read_only)
        made.append(client)
        client.start(timeout=10)
        return client

    yield make
    for client in made:
        client.stop()
        client.close()


def test_connects_to_the_hosts_given(client_of, zookeeper_server, zk, root):
    zk.create(f"{root}/node", b"hello")
    client = client_of({"zookeeper.hosts": zookeeper_server.hosts})

    assert client.get(f"{root}/node")[0] == b"hello"
    with pytest.raises(NoNodeError):
        client.get(f"{root}/does-not-exist")


def test_the_client_is_returned_unstarted(secrets, zookeeper_server):
    # As in the original: the caller chooses when to connect and how long to wait.
    client = zookeeper_client_from_config(secrets, {"zookeeper.hosts": zookeeper_server.hosts})
    assert not client.connected
    client.close()


def test_a_chroot_in_the_hosts_roots_every_path(client_of, zookeeper_server, zk, root):
    zk.create(f"{root}/node", b"under the root")
    client = client_of({"zookeeper.hosts": zookeeper_server.hosts + root})

    assert client.get("/node")[0] == b"under the root"


def test_credentials_from_the_secrets_store_open_a_protected_node(
    client_of, zookeeper_server, zk, root
):
    protected = f"{root}/protected"
    zk.create(protected, b"for one user", acl=[make_digest_acl(ZK_USER, ZK_PASSWORD, all=True)])

    with_credentials = client_of(
        {"zookeeper.hosts": zookeeper_server.hosts, "zookeeper.credentials": CREDENTIALS_SECRET}
    )
    without = client_of({"zookeeper.hosts": zookeeper_server.hosts})

    assert with_credentials.get(protected)[0] == b"for one user"
    with pytest.raises(NoAuthError):
        without.get(protected)


def test_timeout_is_the_session_timeout(client_of, zookeeper_server):
    client = client_of(
        {"zookeeper.hosts": zookeeper_server.hosts, "zookeeper.timeout": "3 seconds"}
    )
    session_id, _password = client.client_id

    # Within the server's bounds (tickTime 200 ms: from 0.4 to 4 seconds), it grants what is asked.
    assert zookeeper_server.session_timeouts()[session_id] == 3000


def test_read_only_is_passed_to_the_client(client_of, zookeeper_server):
    assert client_of({"zookeeper.hosts": zookeeper_server.hosts}, read_only=True).read_only
    assert not client_of({"zookeeper.hosts": zookeeper_server.hosts}).read_only


HOSTS = {"zookeeper.hosts": "127.0.0.1:2181"}


@pytest.mark.parametrize(
    ("app_config", "key", "problem"),
    [
        ({}, "zookeeper.hosts", "required but missing"),
        ({"zookeeper.hosts": "zk01:port"}, "zookeeper.hosts", "Port could not be cast"),
        ({"zookeeper.hosts": "/just/a/chroot"}, "zookeeper.hosts", "'/just/a/chroot'"),
        ({**HOSTS, "zookeeper.timeout": "soon"}, "zookeeper.timeout", "expected seconds"),
        ({**HOSTS, "zookeeper.timeout": "0 seconds"}, "zookeeper.timeout", "positive"),
        (
            {**HOSTS, "zookeeper.credentials": "secret/not-credentials"},
            "zookeeper.credentials",
            "secret/not-credentials is not of the form username:password",
        ),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(secrets, app_config, key, problem):
    with pytest.raises(ConfigurationError) as caught:
        zookeeper_client_from_config(secrets, app_config)

    assert caught.value.key == key
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)  # a secret's value is never shown


def test_a_missing_credentials_secret_is_the_secrets_store_error(secrets):
    with pytest.raises(SecretNotFoundError) as caught:
        zookeeper_client_from_config(secrets, {**HOSTS, "zookeeper.credentials": "secret/nope"})
    assert caught.value.name == "secret/nope"
