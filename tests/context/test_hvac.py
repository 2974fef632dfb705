"""``baseplate.context.hvac``: real hvac calls to the Vault stand-in, each a child span."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace

import hvac
import pytest
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

from baseplate.config import ConfigurationError
from baseplate.context.hvac import (
    HvacContextFactory,
    InstrumentedHvacClient,
    hvac_factory_from_config,
)
from baseplate.secrets import SecretsNotAvailableError, SecretsStore
from tests.context.serving import make_baseplate
from tests.secrets.vault_standin import VaultStandin


@pytest.fixture
def vault():
    standin = VaultStandin()
    standin.add_secret("secret/myservice/token", {"type": "simple", "value": "hunter2"})
    standin.start()
    yield standin
    standin.stop()


def write_secrets_file(path, url, token):
    path.write_text(json.dumps({"secrets": {}, "vault": {"url": url, "token": token}}))


@pytest.fixture
def token(vault):
    return vault.issue_token()


@pytest.fixture
def store(tmp_path, vault, token):
    path = tmp_path / "secrets.json"
    write_secrets_file(path, vault.url, token)
    return SecretsStore(str(path))


@pytest.fixture
def factory(store):
    factory = HvacContextFactory(store, datetime.timedelta(seconds=2))
    yield factory
    factory.session.close()


@pytest.fixture
def baseplate(factory, recorder):
    return make_baseplate(recorder=recorder, vault=factory)


def child_events(recorder, name):
    return [event for event in recorder.events if event[0] == name]


# -- configuration -------------------------------------------------------------------


def test_factory_from_config(store):
    factory = hvac_factory_from_config({"vault.timeout": "200 milliseconds"}, store)
    assert isinstance(factory, HvacContextFactory)
    assert factory.timeout == 0.2
    assert factory.secrets_store is store
    factory.session.close()


def test_factory_from_config_default_timeout(store):
    factory = hvac_factory_from_config({}, store)
    assert factory.timeout == 1.0
    factory.session.close()


def test_factory_from_config_custom_prefix(store):
    factory = hvac_factory_from_config(
        {"vault.timeout": "1 second", "transit.vault.timeout": "3 seconds"},
        store,
        prefix="transit.vault.",
    )
    assert factory.timeout == 3.0
    factory.session.close()


def test_factory_from_config_rejects_bad_values(store):
    with pytest.raises(ConfigurationError) as excinfo:
        hvac_factory_from_config({"vault.timeout": "soon"}, store)
    assert excinfo.value.key == "vault.timeout"
    with pytest.raises(ValueError, match="dot"):
        hvac_factory_from_config({}, store, prefix="vault")


def test_timeout_as_seconds(store):
    factory = HvacContextFactory(store, 2.5)
    assert factory.timeout == 2.5
    assert factory.make_client().adapter._kwargs["timeout"] == 2.5
    factory.session.close()


# -- calls are real and authenticated ------------------------------------------------


def test_read_uses_the_stores_url_and_token(baseplate, vault, token):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert isinstance(context.vault, InstrumentedHvacClient)
        response = context.vault.read("secret/myservice/token")
    assert response["data"] == {"type": "simple", "value": "hunter2"}
    assert ("GET", "/v1/secret/myservice/token") in vault.requests


def test_plain_attributes_are_the_clients(baseplate, vault, token, recorder):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        assert context.vault.url == vault.url
        assert context.vault.token == token
        assert isinstance(context.vault.adapter, hvac.adapters.Adapter)
    assert recorder.events_named("on_child_span_created") == []


def test_setting_an_attribute_sets_it_on_the_client(baseplate, vault):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.vault.token = vault.issue_token()
        other_token = context.vault.token
        assert context.vault.auth.token.lookup_self()["data"]["id"] == other_token


def test_write_then_read(baseplate, vault):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.vault.write_data("secret/new", data={"type": "simple", "value": "v"})
        assert context.vault.read("secret/new")["data"]["value"] == "v"
    assert vault.secrets["secret/new"][0] == {"type": "simple", "value": "v"}


def test_a_rotated_token_is_used_by_the_next_request(baseplate, vault, store, tmp_path):
    first = SimpleNamespace()
    with baseplate.make_server_span(first, "handler"):
        first_id = first.vault.auth.token.lookup_self()["data"]["id"]

    new_token = vault.issue_token()
    staged = tmp_path / "staged.json"
    write_secrets_file(staged, vault.url, new_token)
    staged.replace(tmp_path / "secrets.json")  # as the fetcher does: a new inode

    second = SimpleNamespace()
    with baseplate.make_server_span(second, "handler"):
        second_id = second.vault.auth.token.lookup_self()["data"]["id"]
    assert first_id != new_token
    assert second_id == new_token


def test_the_store_is_read_only_when_vault_is_used(tmp_path, recorder):
    factory = HvacContextFactory(SecretsStore(str(tmp_path / "missing.json")), 1)
    baseplate = make_baseplate(recorder=recorder, vault=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        pass  # a request that never talks to Vault is fine
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(SecretsNotAvailableError):
            context.vault.read("secret/x")
    factory.session.close()


# -- tracing ------------------------------------------------------------------------


def test_each_call_is_a_child_span(baseplate, recorder, spans):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.vault.read("secret/myservice/token")

    assert child_events(recorder, "vault.read") == [
        ("vault.read", "on_start"),
        ("vault.read", "on_set_tag", "vault.path", "secret/myservice/token"),
        ("vault.read", "on_finish", None),
    ]
    assert ("handler", "on_child_span_created", "vault.read") in recorder.events

    exported = {span.name: span for span in spans.get_finished_spans()}
    assert set(exported) == {"vault.read", "handler"}
    child, server = exported["vault.read"], exported["handler"]
    assert child.kind == SpanKind.CLIENT
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id
    assert child.attributes["vault.path"] == "secret/myservice/token"
    assert child.status.status_code != StatusCode.ERROR


def test_nested_api_calls_are_named_by_their_path(baseplate, recorder, spans, token):
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        looked_up = context.vault.auth.token.lookup_self()
        context.vault.secrets.kv.v1.read_secret(path="myservice/token", mount_point="secret")
    assert looked_up["data"]["id"] == token
    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == ["vault.auth.token.lookup_self", "vault.secrets.kv.v1.read_secret"]
    assert (
        "vault.secrets.kv.v1.read_secret",
        "on_set_tag",
        "vault.path",
        "myservice/token",
    ) in recorder.events
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["vault.auth.token.lookup_self", "vault.secrets.kv.v1.read_secret", "handler"]


def test_span_name_follows_the_context_attribute(factory, recorder):
    baseplate = make_baseplate(recorder=recorder, secrets_vault=factory)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):
        context.secrets_vault.read("secret/myservice/token")
    created = [event[2] for event in recorder.events_named("on_child_span_created")]
    assert created == ["secrets_vault.read"]


def test_vault_error_finishes_the_span_with_it(baseplate, recorder, spans, vault, token):
    vault.revoke(token)
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(hvac.exceptions.Forbidden):
            context.vault.read("secret/myservice/token")

    (finish,) = [event for event in child_events(recorder, "vault.read") if event[1] == "on_finish"]
    exc_info = finish[2]
    assert exc_info[0] is hvac.exceptions.Forbidden
    assert isinstance(exc_info[1], hvac.exceptions.Forbidden)

    exported = {span.name: span for span in spans.get_finished_spans()}
    child = exported["vault.read"]
    assert child.status.status_code == StatusCode.ERROR
    assert [event.name for event in child.events] == ["exception"]


def test_vault_down_finishes_the_span_with_the_error(baseplate, recorder, spans, vault):
    vault.stop()
    context = SimpleNamespace()
    with baseplate.make_server_span(context, "handler"):  # noqa: SIM117
        with pytest.raises(requests.ConnectionError):
            context.vault.read("secret/myservice/token")
    (finish,) = [event for event in child_events(recorder, "vault.read") if event[1] == "on_finish"]
    assert issubclass(finish[2][0], requests.ConnectionError)
    exported = {span.name: span for span in spans.get_finished_spans()}
    assert exported["vault.read"].status.status_code == StatusCode.ERROR


def test_requests_instrumentation_does_not_double_the_span(baseplate, spans):
    instrumentor = RequestsInstrumentor()
    instrumentor.instrument()
    try:
        context = SimpleNamespace()
        with baseplate.make_server_span(context, "handler"):
            context.vault.read("secret/myservice/token")
    finally:
        instrumentor.uninstrument()
    assert [span.name for span in spans.get_finished_spans()] == ["vault.read", "handler"]
