"""baseplate.secrets: the reference vectors, reloading, redaction and fuzzing."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baseplate import secrets
from baseplate.core import Baseplate
from baseplate.secrets import (
    CorruptSecretError,
    CredentialSecret,
    SecretNotFoundError,
    SecretsError,
    SecretsNotAvailableError,
    SecretsStore,
    VersionedSecret,
    secrets_store_from_config,
)
from tests import vectors

DOCUMENTED_ERRORS = (CorruptSecretError, SecretNotFoundError, SecretsNotAvailableError)


def write(path: Path, content) -> None:
    """Write the secrets file as the fetcher does: whole, then renamed into place."""
    text = content if isinstance(content, str) else json.dumps(content)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def simple(value: str) -> dict:
    return {"secrets": {"secret/app/key": {"type": "simple", "value": value}}}


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "secrets.json"


def untag(tagged):
    (kind, value), *_ = tagged.items()
    if kind == "bytes_b64":
        return base64.b64decode(value)
    if kind in ("str", "json"):
        return value
    if kind == "none":
        return None
    raise AssertionError(f"unknown tag {kind}")


@pytest.mark.parametrize("case", vectors.cases("secrets"))
def test_vector(case, path):
    if case["file"] is not None:
        write(path, case["file"])
    store = SecretsStore(str(path))
    call = getattr(store, case["call"])
    args = () if case["call"] in ("get_vault_url", "get_vault_token") else (case["path"],)
    expected = case["expected"]

    if "error" in expected:
        error = KeyError if expected["error"] == "KeyError" else getattr(secrets, expected["error"])
        with pytest.raises(error) as raised:
            call(*args)
        if "error_path" in expected:
            assert raised.value.path == expected["error_path"]
        if "error_name" in expected:
            assert raised.value.name == expected["error_name"]
        return

    result = call(*args)
    tagged = expected["value"]
    if "tuple" in tagged:
        for field, value in tagged["tuple"].items():
            assert getattr(result, field) == untag(value), field
    else:
        assert result == untag(tagged)
        assert type(result) is type(untag(tagged)) or isinstance(result, dict)


def test_reloads_when_the_fetcher_rewrites_the_file(path):
    write(path, simple("first"))
    store = SecretsStore(str(path))
    assert store.get_simple("secret/app/key") == b"first"
    write(path, simple("second"))
    assert store.get_simple("secret/app/key") == b"second"


def test_bad_file_after_a_good_one_keeps_serving_the_good_secrets(path, caplog):
    write(path, simple("kept"))
    store = SecretsStore(str(path))
    assert store.get_simple("secret/app/key") == b"kept"
    write(path, '{"secrets": {"secret/app/key": {"type": "simple", "value": "LEAKED"')
    with caplog.at_level(logging.DEBUG):
        assert store.get_simple("secret/app/key") == b"kept"
    assert "could not be loaded" in caplog.text
    assert "LEAKED" not in caplog.text


def test_unparsable_file_error_does_not_quote_the_file(path):
    write(path, '{"secrets": {"secret/app/key": {"type": "simple", "value": "LEAKED"')
    store = SecretsStore(str(path))
    with pytest.raises(SecretsNotAvailableError) as raised:
        store.get_simple("secret/app/key")
    assert "LEAKED" not in str(raised.value)
    assert "LEAKED" not in repr(raised.value.inner)


@pytest.mark.parametrize(
    "content",
    ["[]", '"text"', "null", '{"secrets": []}', '{"vault": "x"}', ""],
    ids=["list", "string", "null", "secrets-list", "vault-string", "empty"],
)
def test_file_of_the_wrong_shape_is_not_available(path, content):
    write(path, content)
    store = SecretsStore(str(path))
    with pytest.raises(SecretsNotAvailableError):
        store.get_raw("secret/app/key")


def test_removed_file_keeps_serving_the_last_secrets(path, caplog):
    # As in the original: the watcher keeps what it last loaded.
    write(path, simple("v"))
    store = SecretsStore(str(path))
    assert store.get_simple("secret/app/key") == b"v"
    path.unlink()
    with caplog.at_level(logging.WARNING):
        assert store.get_simple("secret/app/key") == b"v"
    assert "keeping the data last loaded" in caplog.text
    write(path, simple("back"))
    assert store.get_simple("secret/app/key") == b"back"


def test_timeout_waits_for_the_fetcher(path):
    def fetch_later():
        time.sleep(0.2)
        write(path, simple("fetched"))

    fetcher = threading.Thread(target=fetch_later)
    fetcher.start()
    try:
        store = SecretsStore(str(path), timeout=10)
        assert store.get_simple("secret/app/key") == b"fetched"
    finally:
        fetcher.join()


def test_from_config(path):
    write(path, simple("configured"))
    store = secrets_store_from_config({"secrets.path": str(path)}, timeout=1)
    assert store.get_simple("secret/app/key") == b"configured"


def test_from_config_defaults_to_the_fetchers_path():
    store = secrets_store_from_config({})
    assert repr(store) == "SecretsStore('/var/local/secrets.json')"


def test_from_config_with_prefix(path):
    write(path, simple("mine"))
    raw = {"secrets.path": "/elsewhere.json", "test_secrets.path": str(path)}
    store = secrets_store_from_config(raw, timeout=1, prefix="test_secrets.")
    assert store.get_simple("secret/app/key") == b"mine"
    nested = secrets_store_from_config({"a.b.path": str(path)}, prefix="a.b.")
    assert repr(nested) == f"SecretsStore({str(path)!r})"
    assert repr(secrets_store_from_config(raw, prefix="other.")) == (
        "SecretsStore('/var/local/secrets.json')"
    )


def test_from_config_prefix_must_end_with_a_dot():
    with pytest.raises(ValueError, match=r"^prefix must end with a dot, not 'secrets'$"):
        secrets_store_from_config({}, prefix="secrets")


def test_iso_format_is_the_originals():
    stamp = datetime.datetime(2024, 6, 11, 12, 30, 5, 123456)
    assert stamp.strftime(secrets.store.ISO_FORMAT) == "2024-06-11T12:30:05.123456Z"


def test_per_request_view_sees_one_version(path, spans):
    write(path, simple("before"))
    store = SecretsStore(str(path))
    baseplate = Baseplate()
    baseplate.add_to_context("secrets", store)

    first = SimpleNamespace()
    baseplate.make_server_span(first, "one")
    assert isinstance(first.secrets, SecretsStore)
    assert first.secrets.get_simple("secret/app/key") == b"before"
    write(path, simple("after"))
    assert first.secrets.get_simple("secret/app/key") == b"before"

    second = SimpleNamespace()
    baseplate.make_server_span(second, "two")
    assert second.secrets.get_simple("secret/app/key") == b"after"
    assert store.get_simple("secret/app/key") == b"after"


def test_per_request_view_retries_after_a_failure(path):
    view = SecretsStore(str(path)).make_object_for_context("secrets", None)
    with pytest.raises(SecretsNotAvailableError):
        view.get_simple("secret/app/key")
    write(path, simple("late"))
    assert view.get_simple("secret/app/key") == b"late"


def test_reprs_hide_secret_values(path):
    write(
        path,
        {
            "secrets": {
                "v": {"type": "versioned", "current": "CUR-SECRET", "previous": "PREV-SECRET"},
                "c": {"type": "credential", "username": "USER-SECRET", "password": "PASS-SECRET"},
            }
        },
    )
    store = SecretsStore(str(path))
    shown = " ".join(
        [
            repr(store.get_versioned("v")),
            str(store.get_versioned("v")),
            repr(store.get_credentials("c")),
            repr(store.get_raw("c")),
            repr([store.get_raw("v")]),
            repr(store),
        ]
    )
    assert "SECRET" not in shown
    assert "previous=<redacted>, current=<redacted>, next=None" in shown


def test_corrupt_secret_messages_do_not_quote_values(path):
    write(
        path,
        {
            "secrets": {
                "b64": {"type": "simple", "value": "TOPSECRET!", "encoding": "base64"},
                "num": {"type": "versioned", "current": 12345},
            }
        },
    )
    store = SecretsStore(str(path))
    with pytest.raises(CorruptSecretError) as raised:
        store.get_simple("b64")
    assert "TOPSECRET" not in str(raised.value)
    assert str(raised.value) == "b64: value is not valid base64"
    with pytest.raises(CorruptSecretError) as raised:
        store.get_versioned("num")
    assert "12345" not in str(raised.value)


def test_get_raw_returns_a_copy(path):
    write(path, {"secrets": {"k": {"type": "simple", "value": "v", "extra": {"nested": 1}}}})
    store = SecretsStore(str(path))
    raw = store.get_raw("k")
    raw["value"] = "changed"
    raw["extra"]["nested"] = 2
    assert store.get_raw("k") == {"type": "simple", "value": "v", "extra": {"nested": 1}}
    assert store.get_simple("k") == b"v"


def test_secret_that_is_not_an_object_is_corrupt(path):
    write(path, {"secrets": {"k": "just a string"}})
    with pytest.raises(CorruptSecretError) as raised:
        SecretsStore(str(path)).get_raw("k")
    assert raised.value.path == "k"


def test_empty_optional_versions_are_absent(path):
    write(
        path,
        {"secrets": {"k": {"type": "versioned", "current": "c", "previous": "", "next": None}}},
    )
    secret = SecretsStore(str(path)).get_versioned("k")
    assert secret == VersionedSecret(previous=None, current=b"c", next=None)
    assert list(secret.all_versions) == [b"c"]


def test_non_ascii_base64_is_corrupt(path):
    write(path, {"secrets": {"k": {"type": "simple", "value": "caf\u00e9", "encoding": "base64"}}})
    with pytest.raises(CorruptSecretError):
        SecretsStore(str(path)).get_simple("k")


def test_identity_values_are_utf8(path):
    write(path, {"secrets": {"k": {"type": "simple", "value": "caf\u00e9"}}})
    assert SecretsStore(str(path)).get_simple("k") == "caf\u00e9".encode()


def test_missing_vault_section_is_not_found_and_a_key_error(path):
    write(path, {"secrets": {}})
    store = SecretsStore(str(path))
    for getter, name in (
        (store.get_vault_url, "vault.url"),
        (store.get_vault_token, "vault.token"),
    ):
        with pytest.raises(SecretNotFoundError) as raised:
            getter()
        assert isinstance(raised.value, KeyError)
        assert raised.value.name == name


def test_vault_values_must_be_strings(path):
    write(path, {"vault": {"url": 8200, "token": None}})
    store = SecretsStore(str(path))
    with pytest.raises(CorruptSecretError, match="url is int"):
        store.get_vault_url()
    with pytest.raises(CorruptSecretError, match="token is null"):
        store.get_vault_token()


def test_versioned_secret_helpers():
    secret = VersionedSecret.from_simple_secret(b"k")
    assert secret == VersionedSecret(previous=None, current=b"k", next=None)
    assert list(VersionedSecret(b"p", b"c", b"n").all_versions) == [b"c", b"p", b"n"]
    assert CredentialSecret("u", "p").password == "p"


def test_errors_share_a_base_and_carry_context():
    assert all(issubclass(error, SecretsError) for error in DOCUMENTED_ERRORS)
    assert str(CorruptSecretError("secret/x", "bad")) == "secret/x: bad"
    assert str(SecretNotFoundError("secret/x")) == "secret not found: secret/x"
    inner = FileNotFoundError("gone")
    assert SecretsNotAvailableError(inner).inner is inner


# Fuzzing: whatever the file holds, the getters raise only the documented errors.

_KEYS = ["type", "value", "encoding", "current", "previous", "next", "username", "password"]
_WORDS = ["simple", "versioned", "credential", "identity", "base64", "aGVsbG8=", "YWJj", ""]
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.sampled_from(_WORDS)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_secret = st.fixed_dictionaries(
    {"type": st.sampled_from(["simple", "versioned", "credential"])},
    optional={
        key: _json_leaf | st.text(alphabet="aGVsbG8=YWJj \n!") for key in _KEYS if key != "type"
    },
) | st.dictionaries(st.sampled_from(_KEYS), _json_leaf, max_size=6)
_document = st.fixed_dictionaries(
    {},
    optional={
        "secrets": st.dictionaries(st.sampled_from(["a", "b"]), _secret | _json) | _json,
        "vault": st.dictionaries(st.sampled_from(["url", "token"]), _json_leaf) | _json,
    },
)


@settings(max_examples=200, deadline=None)
@given(
    content=st.one_of(
        _document.map(json.dumps),
        _json.map(json.dumps),
        st.text(st.characters(blacklist_categories=("Cs",))),
        st.binary(),
    )
)
def test_getters_raise_only_documented_errors(content):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "secrets.json"
        raw = content if isinstance(content, bytes) else content.encode("utf-8")
        path.write_bytes(raw)
        store = SecretsStore(str(path))
        for call in (
            lambda: store.get_raw("a"),
            lambda: store.get_simple("a"),
            lambda: store.get_versioned("a"),
            lambda: store.get_credentials("b"),
            store.get_vault_url,
            store.get_vault_token,
        ):
            with contextlib.suppress(*DOCUMENTED_ERRORS):
                call()
