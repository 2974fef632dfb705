"""The secrets fetcher against a local Vault stand-in, with the real hvac client."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from baseplate._ini import ConfigFileError
from baseplate.config import ConfigurationError
from baseplate.secrets import SecretsStore
from baseplate.secrets import fetcher as fetcher_module
from baseplate.secrets.fetcher import (
    FetchError,
    SecretFetcher,
    load_config,
    parse_fetcher_config,
    refresh_delay,
    retry_delay,
    write_secrets_file,
)
from tests.secrets.vault_standin import KV_LEASE_DURATION, MetadataStandin, VaultStandin

ROOT = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdCJ9.c2lnbmF0dXJl"

SECRETS = {
    "secret/myservice/some-key": {
        "type": "versioned",
        "current": "Y3VycmVudA==",
        "previous": "cHJldmlvdXM=",
        "encoding": "base64",
    },
    "secret/myservice/token": {"type": "simple", "value": "hunter2", "encoding": "identity"},
    "secret/myservice/db": {"type": "credential", "username": "reddit", "password": "swordfish"},
}


@pytest.fixture
def metadata():
    standin = MetadataStandin()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def vault(metadata):
    standin = VaultStandin()
    standin.aws_roles["myservice"] = metadata.login_pkcs7
    standin.kubernetes_roles["myservice-k8s"] = JWT
    for path, data in SECRETS.items():
        standin.add_secret(path, data)
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def jwt_path(tmp_path):
    path = tmp_path / "serviceaccount-token"
    path.write_text(JWT + "\n")
    return path


@pytest.fixture
def raw_config(tmp_path, vault, metadata, jwt_path):
    return {
        "vault.url": vault.url,
        "vault.role": "myservice",
        "vault.auth_type": "aws",
        "vault.aws_metadata_url": metadata.url,
        "vault.nonce_path": str(tmp_path / "vault.nonce"),
        "vault.kubernetes_token_path": str(jwt_path),
        "vault.timeout": "2 seconds",
        "output.path": str(tmp_path / "secrets.json"),
        "secrets": ",\n".join(SECRETS),
    }


@pytest.fixture
def make_fetcher(raw_config):
    fetchers = []

    def make(**overrides):
        fetcher = SecretFetcher(parse_fetcher_config({**raw_config, **overrides}))
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        fetcher.close()


def read_output(raw_config) -> dict:
    with open(raw_config["output.path"], "rb") as f:
        return json.load(f)


# -- configuration ------------------------------------------------------------


def test_config_defaults():
    cfg = parse_fetcher_config({"vault.url": "https://vault:8200/", "vault.role": "r"})
    assert cfg.vault.auth_type == "aws"
    assert cfg.vault.mount_point == "aws-ec2"
    assert cfg.vault.kubernetes_token_path == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    assert cfg.vault.aws_metadata_url == "http://169.254.169.254"
    assert cfg.vault.timeout.total_seconds() == 5
    assert cfg.output.path == "/var/local/secrets.json"
    assert cfg.output.mode == 0o400
    assert cfg.output.owner is None
    assert cfg.output.group is None
    assert cfg.secrets == []
    assert cfg.callback is None


def test_config_kubernetes_mount_point_default_and_override():
    base = {"vault.url": "https://vault:8200/", "vault.role": "r", "vault.auth_type": "kubernetes"}
    assert parse_fetcher_config(base).vault.mount_point == "kubernetes"
    cfg = parse_fetcher_config({**base, "vault.mount_point": "k8s-west"})
    assert cfg.vault.mount_point == "k8s-west"


def test_config_secrets_list_commas_and_newlines():
    cfg = parse_fetcher_config(
        {
            "vault.url": "u",
            "vault.role": "r",
            "secrets": "\nsecret/one,\nsecret/two,\n  secret/three\nsecret/four,",
            "output.mode": "0640",
        }
    )
    assert cfg.secrets == ["secret/one", "secret/two", "secret/three", "secret/four"]
    assert cfg.output.mode == 0o640


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"vault.role": "r"}, "vault.url"),
        ({"vault.url": "u"}, "vault.role"),
        ({"vault.url": "u", "vault.role": "r", "vault.auth_type": "gcp"}, "vault.auth_type"),
        ({"vault.url": "u", "vault.role": "r", "output.mode": "0x"}, "output.mode"),
        ({"vault.url": "u", "vault.role": "r", "output.owner": "no-such-user-x"}, "output.owner"),
    ],
)
def test_config_errors(raw, key):
    with pytest.raises(ConfigurationError) as excinfo:
        parse_fetcher_config(raw)
    assert excinfo.value.key == key


def test_load_config_reads_the_section(tmp_path):
    path = tmp_path / "fetcher.ini"
    path.write_text(
        textwrap.dedent(
            """\
            [secret-fetcher]
            vault.url = https://vault.example.com:8200/
            vault.role = my-server-role
            vault.auth_type = kubernetes
            output.path = /tmp/x/secrets.json
            output.mode = 0440
            secrets =
                secret/one,
                secret/two,
            callback = /usr/local/bin/reload-%(nothing)s
            """
        )
    )
    cfg = load_config(str(path))
    assert cfg.vault.url == "https://vault.example.com:8200/"
    assert cfg.vault.mount_point == "kubernetes"
    assert cfg.secrets == ["secret/one", "secret/two"]
    assert cfg.output.mode == 0o440
    assert cfg.callback == "/usr/local/bin/reload-%(nothing)s"


def test_load_config_without_the_section(tmp_path):
    path = tmp_path / "fetcher.ini"
    path.write_text("[app:main]\nfoo = bar\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: no [secret-fetcher] section"


def test_load_config_reads_keys_as_every_ini_file_does(tmp_path):
    path = tmp_path / "fetcher.ini"
    path.write_text("[secret-fetcher]\nVault.URL = https://vault:8200/\nvault.Role = r\n")
    cfg = load_config(str(path))
    assert (cfg.vault.url, cfg.vault.role) == ("https://vault:8200/", "r")


def test_load_config_names_the_file_it_cannot_read(tmp_path):
    with pytest.raises(ConfigFileError, match=r"nope\.ini: cannot read the file"):
        load_config(str(tmp_path / "nope.ini"))


# -- authentication -------------------------------------------------------------


def test_aws_login_writes_the_secrets_file(make_fetcher, raw_config, vault, metadata, tmp_path):
    fetcher = make_fetcher()
    fetcher.refresh()

    (login,) = vault.logins
    assert login["role"] == "myservice"
    assert login["pkcs7"] == metadata.login_pkcs7
    assert "\n" not in login["pkcs7"]
    # The nonce the fetcher chose was saved before logging in, and registered.
    nonce = (tmp_path / "vault.nonce").read_text()
    assert login["nonce"] == nonce == vault.instance_nonce
    assert stat.S_IMODE(os.stat(tmp_path / "vault.nonce").st_mode) == 0o600
    # IMDSv2: a session token first, then the document.
    assert metadata.requests == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/dynamic/instance-identity/pkcs7"),
    ]
    assert ("POST", "/v1/auth/aws-ec2/login") in vault.requests

    document = read_output(raw_config)
    assert document == {
        "secrets": SECRETS,
        "vault": {"url": vault.url, "token": fetcher.token.client_token},
    }
    assert fetcher.token.client_token in vault.tokens


def test_aws_login_after_restart_reuses_the_nonce(make_fetcher, vault, tmp_path):
    make_fetcher().refresh()
    make_fetcher().refresh()  # a new process: no token in memory
    assert len(vault.logins) == 2
    assert vault.logins[0]["nonce"] == vault.logins[1]["nonce"]


def test_aws_login_with_an_empty_nonce_file_makes_a_new_nonce(make_fetcher, vault, tmp_path):
    (tmp_path / "vault.nonce").write_text("")
    make_fetcher().refresh()
    nonce = (tmp_path / "vault.nonce").read_text()
    assert nonce
    assert vault.logins[0]["nonce"] == nonce == vault.instance_nonce


def test_aws_login_saves_a_nonce_vault_issued(make_fetcher, vault, tmp_path, monkeypatch):
    # Vault only issues a nonce when the client sent none; the fetcher always
    # sends one, but keeps whatever Vault says it registered.
    real_login = vault._login

    def login_ignoring_the_client_nonce(mount, payload):
        return real_login(mount, {key: value for key, value in payload.items() if key != "nonce"})

    monkeypatch.setattr(vault, "_login", login_ignoring_the_client_nonce)
    make_fetcher().refresh()
    assert vault.instance_nonce
    assert (tmp_path / "vault.nonce").read_text() == vault.instance_nonce


def test_aws_login_with_a_wrong_nonce_fails(make_fetcher, vault, tmp_path, raw_config):
    vault.instance_nonce = "registered-by-someone-else"
    with pytest.raises(FetchError, match="client nonce mismatch") as excinfo:
        make_fetcher().refresh()
    assert excinfo.value.step == "log in to auth/aws-ec2"
    assert not os.path.exists(raw_config["output.path"])


def test_aws_login_imdsv1_fallback(make_fetcher, vault, metadata, raw_config):
    metadata.imdsv2 = False
    make_fetcher().refresh()
    assert vault.logins[0]["pkcs7"] == metadata.login_pkcs7
    assert read_output(raw_config)["secrets"] == SECRETS


def test_aws_metadata_unreachable(make_fetcher, metadata, vault, raw_config):
    metadata.stop()
    with pytest.raises(FetchError) as excinfo:
        make_fetcher().refresh()
    assert excinfo.value.step == "fetch the EC2 instance identity document"
    assert vault.logins == []


def test_aws_custom_mount_point(make_fetcher, vault, raw_config):
    vault.auth_mounts["aws-prod"] = "aws"
    make_fetcher(**{"vault.mount_point": "aws-prod"}).refresh()
    assert ("POST", "/v1/auth/aws-prod/login") in vault.requests


def test_kubernetes_login(make_fetcher, vault, metadata, raw_config):
    fetcher = make_fetcher(**{"vault.auth_type": "kubernetes", "vault.role": "myservice-k8s"})
    fetcher.refresh()
    assert vault.logins == [{"role": "myservice-k8s", "jwt": JWT}]
    assert ("POST", "/v1/auth/kubernetes/login") in vault.requests
    assert metadata.requests == []
    assert read_output(raw_config) == {
        "secrets": SECRETS,
        "vault": {"url": vault.url, "token": fetcher.token.client_token},
    }


def test_kubernetes_login_rereads_a_rotated_jwt(make_fetcher, vault, jwt_path):
    vault.token_renewable = False
    fetcher = make_fetcher(**{"vault.auth_type": "kubernetes", "vault.role": "myservice-k8s"})
    fetcher.refresh()
    jwt_path.write_text("rotated.jwt.value")
    vault.kubernetes_roles["myservice-k8s"] = "rotated.jwt.value"
    fetcher.refresh()
    assert [login["jwt"] for login in vault.logins] == [JWT, "rotated.jwt.value"]


def test_kubernetes_login_rejected(make_fetcher, vault, raw_config):
    vault.kubernetes_roles["myservice-k8s"] = "another.jwt"
    fetcher = make_fetcher(**{"vault.auth_type": "kubernetes", "vault.role": "myservice-k8s"})
    with pytest.raises(FetchError, match="permission denied"):
        fetcher.refresh()
    assert not os.path.exists(raw_config["output.path"])


def test_kubernetes_jwt_missing(make_fetcher, vault, jwt_path):
    jwt_path.unlink()
    fetcher = make_fetcher(**{"vault.auth_type": "kubernetes", "vault.role": "myservice-k8s"})
    with pytest.raises(FetchError, match="service-account token") as excinfo:
        fetcher.refresh()
    assert "FileNotFoundError" in excinfo.value.message
    assert vault.logins == []


# -- the file -------------------------------------------------------------------


def test_written_file_parses_with_the_secrets_store(make_fetcher, raw_config, vault):
    fetcher = make_fetcher()
    fetcher.refresh()

    store = SecretsStore(raw_config["output.path"])
    assert store.get_simple("secret/myservice/token") == b"hunter2"
    versioned = store.get_versioned("secret/myservice/some-key")
    assert versioned.current == b"current"
    assert versioned.previous == b"previous"
    assert versioned.next is None
    credentials = store.get_credentials("secret/myservice/db")
    assert (credentials.username, credentials.password) == ("reddit", "swordfish")
    assert store.get_raw("secret/myservice/db") == SECRETS["secret/myservice/db"]
    assert store.get_vault_url() == vault.url
    assert store.get_vault_token() == fetcher.token.client_token


def test_written_file_matches_the_wire_vector_layout(make_fetcher, raw_config):
    # secrets.md: one JSON object with "secrets" (path -> raw secret) and
    # "vault" ({"url", "token"}); nothing else is needed by the store.
    make_fetcher().refresh()
    document = read_output(raw_config)
    assert set(document) == {"secrets", "vault"}
    assert set(document["vault"]) == {"url", "token"}
    assert all(isinstance(value, dict) for value in document["secrets"].values())


def test_file_mode_default_and_configured(make_fetcher, raw_config, tmp_path):
    make_fetcher().refresh()
    assert stat.S_IMODE(os.stat(raw_config["output.path"]).st_mode) == 0o400

    make_fetcher(**{"output.mode": "0640"}).refresh()
    assert stat.S_IMODE(os.stat(raw_config["output.path"]).st_mode) == 0o640
    # No temporary files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_write_replaces_the_file_atomically(make_fetcher, raw_config, vault, monkeypatch):
    fetcher = make_fetcher()
    fetcher.refresh()
    before = os.stat(raw_config["output.path"])

    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        # At the moment of the rename the new content is complete and on disk
        # under a temporary name in the same directory, with its final mode.
        assert os.path.dirname(src) == os.path.dirname(dst)
        assert stat.S_IMODE(os.stat(src).st_mode) == 0o400
        with open(src, "rb") as f:
            replaced.append(json.load(f))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    vault.add_secret("secret/myservice/token", {"type": "simple", "value": "rotated"})
    fetcher.refresh()

    assert len(replaced) == 1
    assert replaced[0]["secrets"]["secret/myservice/token"]["value"] == "rotated"
    after = os.stat(raw_config["output.path"])
    assert after.st_ino != before.st_ino  # a new file, renamed over the old one
    assert read_output(raw_config) == replaced[0]


def test_unchanged_content_is_not_rewritten(make_fetcher, raw_config):
    fetcher = make_fetcher()
    fetcher.refresh()
    before = os.stat(raw_config["output.path"])
    fetcher.refresh()  # renews the same token and reads the same secrets
    after = os.stat(raw_config["output.path"])
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "secrets.json"
    write_secrets_file(str(path), {"a": {"type": "simple", "value": "1"}}, "u", "t1")
    original = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_secrets_file(str(path), {"a": {"type": "simple", "value": "2"}}, "u", "t2")
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]


def test_write_into_a_missing_directory_is_a_fetch_error(make_fetcher, tmp_path):
    fetcher = make_fetcher(**{"output.path": str(tmp_path / "missing" / "secrets.json")})
    with pytest.raises(FetchError) as excinfo:
        fetcher.refresh()
    assert excinfo.value.step.startswith("write ")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_and_group(make_fetcher, raw_config):
    make_fetcher(**{"output.owner": "nobody", "output.group": "nogroup"}).refresh()
    info = os.stat(raw_config["output.path"])
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    assert stat.S_IMODE(info.st_mode) == 0o400


def test_callback_runs_after_a_write(make_fetcher, raw_config, tmp_path):
    marker = tmp_path / "callback-ran"
    script = tmp_path / "callback.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {marker}\n')
    script.chmod(0o755)
    fetcher = make_fetcher(callback=str(script))
    fetcher.refresh()
    fetcher.refresh()  # nothing changed: no second write, no second call
    assert marker.read_text().splitlines() == [raw_config["output.path"]]


def test_failing_callback_is_logged(make_fetcher, raw_config, tmp_path, caplog):
    fetcher = make_fetcher(callback=str(tmp_path / "no-such-callback"))
    with caplog.at_level(logging.ERROR, logger="baseplate.secrets.fetcher"):
        fetcher.refresh()
    assert "callback" in caplog.text
    assert read_output(raw_config)["secrets"] == SECRETS


# -- refresh timing and token renewal --------------------------------------------


def test_refresh_delay():
    assert refresh_delay([3600, KV_LEASE_DURATION]) == 1800
    assert refresh_delay([3600, 600, 0]) == 300
    assert refresh_delay([0, 0]) == fetcher_module.MAX_REFRESH_DELAY
    assert refresh_delay([]) == fetcher_module.MAX_REFRESH_DELAY
    assert refresh_delay([30 * 86400]) == fetcher_module.MAX_REFRESH_DELAY
    assert refresh_delay([1]) == fetcher_module.MIN_REFRESH_DELAY


def test_retry_delay():
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(10_000) == 60


def test_refresh_timing_from_the_token_ttl(make_fetcher, vault):
    vault.token_ttl = 1200
    assert make_fetcher().refresh() == 600


def test_refresh_timing_from_a_secret_lease(make_fetcher, vault):
    vault.add_secret("secret/myservice/token", {"type": "simple", "value": "x"}, 90)
    assert make_fetcher().refresh() == 45


def test_second_refresh_renews_the_token(make_fetcher, vault, raw_config):
    fetcher = make_fetcher()
    fetcher.refresh()
    token = fetcher.token.client_token
    fetcher.refresh()
    assert len(vault.logins) == 1
    assert ("POST", "/v1/auth/token/renew-self") in vault.requests
    assert fetcher.token.client_token == token
    assert read_output(raw_config)["vault"]["token"] == token


def test_revoked_token_logs_in_again(make_fetcher, vault, raw_config):
    fetcher = make_fetcher()
    fetcher.refresh()
    old_token = fetcher.token.client_token
    vault.revoke(old_token)
    fetcher.refresh()
    assert len(vault.logins) == 2
    assert fetcher.token.client_token != old_token
    assert read_output(raw_config)["vault"]["token"] == fetcher.token.client_token


def test_token_near_its_max_ttl_logs_in_again(make_fetcher, vault):
    vault.token_ttl = 1000
    vault.token_max_ttl = 1200
    fetcher = make_fetcher()
    fetcher.refresh()
    # Pretend the token was issued 900s ago: renewal would grant only ~300s.
    vault.tokens[fetcher.token.client_token].created -= 900
    first_token = fetcher.token.client_token
    delay = fetcher.refresh()
    assert len(vault.logins) == 2
    assert fetcher.token.client_token != first_token
    assert delay == 500


def test_non_renewable_token_logs_in_every_round(make_fetcher, vault):
    vault.token_renewable = False
    fetcher = make_fetcher()
    fetcher.refresh()
    fetcher.refresh()
    assert len(vault.logins) == 2
    assert ("POST", "/v1/auth/token/renew-self") not in vault.requests


def test_run_forever_sleeps_the_computed_delays(make_fetcher, vault):
    vault.token_ttl = 300
    slept = []

    class StopLoopError(Exception):
        pass

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:
            raise StopLoopError

    fetcher = make_fetcher()
    fetcher.sleep = sleep
    with pytest.raises(StopLoopError):
        fetcher.run_forever()
    assert slept == [150, 150, 150]


# -- failures --------------------------------------------------------------------


def _failing_round(fetcher, raw_config, caplog):
    before = Path(raw_config["output.path"]).read_bytes()
    with caplog.at_level(logging.ERROR, logger="baseplate.secrets.fetcher"):
        delay = fetcher.run_once()
    assert Path(raw_config["output.path"]).read_bytes() == before
    return delay


def test_vault_down_keeps_the_previous_file(make_fetcher, vault, raw_config, caplog):
    fetcher = make_fetcher()
    assert fetcher.run_once() == 1800
    vault.stop()

    delays = [_failing_round(fetcher, raw_config, caplog) for _ in range(4)]
    assert fetcher.failures == 4
    for failures, delay in enumerate(delays, start=1):
        assert retry_delay(failures) / 2 <= delay <= retry_delay(failures)
    assert "could not refresh secrets" in caplog.text
    assert "ConnectionError" in caplog.text

    vault.start()  # back on the same port
    assert fetcher.run_once() == 1800
    assert fetcher.failures == 0


@pytest.mark.parametrize(("status", "message"), [(500, "internal error"), (403, "permission")])
def test_vault_errors_keep_the_previous_file(
    make_fetcher, vault, raw_config, caplog, status, message
):
    fetcher = make_fetcher()
    fetcher.run_once()
    vault.fail_status = status
    delay = _failing_round(fetcher, raw_config, caplog)
    assert 0.5 <= delay <= 1.0
    assert message in caplog.text
    vault.fail_status = None
    fetcher.run_once()
    assert fetcher.failures == 0


def test_vault_errors_before_any_file(make_fetcher, vault, raw_config, caplog):
    vault.fail_status = 503
    fetcher = make_fetcher()
    with caplog.at_level(logging.ERROR, logger="baseplate.secrets.fetcher"):
        fetcher.run_once()
    assert not os.path.exists(raw_config["output.path"])
    assert "sealed" in caplog.text


def test_one_unreadable_secret_writes_nothing(make_fetcher, vault, raw_config, caplog):
    fetcher = make_fetcher()
    fetcher.run_once()
    vault.add_secret("secret/myservice/token", {"type": "simple", "value": "rotated"})
    vault.denied_paths.add("secret/myservice/db")
    _failing_round(fetcher, raw_config, caplog)
    assert "read secret/myservice/db" in caplog.text
    assert read_output(raw_config)["secrets"]["secret/myservice/token"]["value"] == "hunter2"


def test_missing_secret_is_an_error(make_fetcher, vault, raw_config):
    fetcher = make_fetcher(secrets="secret/myservice/token, secret/nope")
    with pytest.raises(FetchError, match="no secret at this path") as excinfo:
        fetcher.refresh()
    assert excinfo.value.step == "read secret/nope"


def test_unexpected_errors_are_logged_and_retried(make_fetcher, monkeypatch, caplog):
    fetcher = make_fetcher()

    def broken():
        raise RuntimeError("bug")

    monkeypatch.setattr(fetcher, "refresh", broken)
    with caplog.at_level(logging.ERROR, logger="baseplate.secrets.fetcher"):
        delay = fetcher.run_once()
    assert 0.5 <= delay <= 1.0
    assert "unexpected error" in caplog.text
    assert "RuntimeError: bug" in caplog.text


# -- the command line --------------------------------------------------------------


def _write_ini(path: Path, raw_config: dict) -> None:
    lines = ["[secret-fetcher]"]
    for key, value in raw_config.items():
        indented = value.replace("\n", "\n    ")
        lines.append(f"{key} = {indented}")
    path.write_text("\n".join(lines) + "\n")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "baseplate.secrets.fetcher", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_cli_once(raw_config, vault, tmp_path):
    ini = tmp_path / "fetcher.ini"
    _write_ini(ini, raw_config)
    result = _run_cli("--once", str(ini))
    assert result.returncode == 0, result.stderr
    document = read_output(raw_config)
    assert document["secrets"] == SECRETS
    assert document["vault"]["url"] == vault.url
    assert document["vault"]["token"] in vault.tokens
    assert "wrote 3 secrets" in result.stderr


def test_cli_once_with_vault_down(raw_config, vault, tmp_path):
    ini = tmp_path / "fetcher.ini"
    _write_ini(ini, raw_config)
    Path(raw_config["output.path"]).write_text('{"secrets": {}, "vault": {}}')
    vault.stop()
    result = _run_cli("--once", str(ini))
    assert result.returncode == 1
    assert "could not fetch secrets" in result.stderr
    assert Path(raw_config["output.path"]).read_text() == '{"secrets": {}, "vault": {}}'


def test_cli_bad_config(tmp_path):
    ini = tmp_path / "fetcher.ini"
    ini.write_text("[secret-fetcher]\nvault.role = r\n")
    result = _run_cli("--once", str(ini))
    assert result.returncode == 2
    assert "vault.url" in result.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[app:main]\nfoo = bar\n", "no [secret-fetcher] section"),
        ("vault.url = x\n", "line 1: text before the first [section]"),
    ],
)
def test_cli_bad_file_is_one_line_naming_it(tmp_path, text, problem):
    ini = tmp_path / "fetcher.ini"
    ini.write_text(text)
    result = _run_cli("--once", str(ini))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.endswith(f"bad configuration: {ini}: {problem}")
