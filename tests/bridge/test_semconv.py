"""Metric names from semantic-convention attributes (bridge.semconv).

The attribute sets named ``*_OLD`` and ``*_STABLE`` are what the installed
requests and redis instrumentations set at the end of a call, without and
with ``OTEL_SEMCONV_STABILITY_OPT_IN=http,database``: the name must not
depend on which of the two a service runs with.
"""

from __future__ import annotations

import pytest

from bridge import semconv
from bridge.semconv import client_metric_name, safe_component, url_host

REQUESTS_OLD = {
    "http.method": "GET",
    "http.url": "http://REDACTED:REDACTED@127.0.0.1:38695/a/b?q=1",
    "user_agent.original": "python-requests/2.34.2",
    "http.status_code": 200,
}
REQUESTS_STABLE = {
    "http.request.method": "GET",
    "url.full": "http://REDACTED:REDACTED@127.0.0.1:38145/a/b?q=1",
    "user_agent.original": "python-requests/2.34.2",
    "server.address": "127.0.0.1",
    "network.peer.address": "127.0.0.1",
    "server.port": 38145,
    "network.peer.port": 38145,
    "http.response.status_code": 200,
}
REDIS_OLD = {
    "db.statement": "SET ? ?",
    "db.redis.args_length": 3,
    "db.system": "redis",
    "db.redis.database_index": 0,
    "net.peer.name": "127.0.0.1",
    "net.peer.port": 6379,
    "net.transport": "ip_tcp",
}
REDIS_STABLE = {
    "db.query.text": "SET ? ?",
    "db.redis.args_length": 3,
    "db.system.name": "redis",
    "server.address": "127.0.0.1",
    "server.port": 6379,
    "network.transport": "tcp",
}


# -- safe_component --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("GET", "GET"),
        ("127.0.0.1", "127_0_0_1"),
        ("GET /hello/<name>", "GET_hello_name"),
        ("my-service_v2", "my-service_v2"),
        ("a . b", "a_b"),
        ("a__b", "a_b"),
        ("a_._b", "a_b"),
        ("__call__", "call"),
        ("SET GET", "SET_GET"),
        ("/var/run/redis.sock", "var_run_redis_sock"),
        ("redis:6379", "redis_6379"),
        ("tab\tnewline\n", "tab_newline"),
        ("café.example", "caf_example"),
        ("Grüße", "Gr_e"),
        ("", "unknown"),
        ("...", "unknown"),
        ("日本語", "unknown"),
        ("🚀", "unknown"),
    ],
)
def test_safe_component(text: str, safe: str) -> None:
    assert safe_component(text) == safe


def test_safe_component_is_bounded() -> None:
    assert safe_component("x" * 1000) == "x" * semconv.MAX_COMPONENT_LENGTH
    assert semconv.MAX_COMPONENT_LENGTH == 64


def test_safe_component_does_not_end_in_an_underscore_when_cut() -> None:
    text = "a" * 63 + ".b"
    assert safe_component(text) == "a" * 63


def test_safe_component_of_a_long_unicode_text_is_bounded_and_ascii() -> None:
    # Cut to 64 characters, the last of which is an underscore, dropped too.
    assert safe_component("ü1" * 500) == "1_" * 31 + "1"


# -- url_host -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://example.com/a/b?q=1#frag", "example.com"),
        ("https://user:secret@api.example.com:8443/v1/users/42?token=x", "api.example.com"),
        ("http://REDACTED:REDACTED@127.0.0.1:38695/a/b?q=1", "127.0.0.1"),
        ("http://API.Example.COM/", "api.example.com"),
        ("http://[::1]:8080/path", "::1"),
        ("http://[2001:db8::1]/", "2001:db8::1"),
        ("http://user@[fe80::1]:80/x", "fe80::1"),
        ("http://bücher.example/straße", "bücher.example"),
        ("redis://cache:6379/0", "cache"),
    ],
)
def test_url_host_is_the_host_alone(url: str, host: str) -> None:
    assert url_host(url) == host


@pytest.mark.parametrize("url", ["", "/relative/path?q=1", "not a url", "http://[::1/broken"])
def test_url_host_of_a_url_without_a_usable_host_is_none(url: str) -> None:
    assert url_host(url) is None


# -- client_metric_name: what the installed instrumentations set -----------------


@pytest.mark.parametrize("attributes", [REQUESTS_OLD, REQUESTS_STABLE])
def test_http_call_is_named_for_host_and_method(attributes: dict[str, object]) -> None:
    assert client_metric_name(attributes, "GET") == "127_0_0_1.GET"


@pytest.mark.parametrize("attributes", [REDIS_OLD, REDIS_STABLE])
def test_redis_command_is_named_for_system_host_and_command(attributes: dict[str, object]) -> None:
    assert client_metric_name(attributes, "SET") == "redis.127_0_0_1.SET"


def test_redis_and_http_on_one_host_stay_apart() -> None:
    http = client_metric_name(REQUESTS_OLD, "GET")
    redis_get = client_metric_name({**REDIS_OLD, "db.statement": "GET ?"}, "GET")
    assert http == "127_0_0_1.GET"
    assert redis_get == "redis.127_0_0_1.GET"


def test_redis_pipeline_is_named_for_its_commands() -> None:
    assert client_metric_name(REDIS_OLD, "SET GET") == "redis.127_0_0_1.SET_GET"


def test_redis_over_a_unix_socket_is_named_for_the_socket_path() -> None:
    attributes = {"db.system": "redis", "net.peer.name": "/run/redis/redis.sock"}
    assert client_metric_name(attributes, "GET") == "redis.run_redis_redis_sock.GET"


# -- client_metric_name: precedence ----------------------------------------------


def test_peer_service_comes_before_any_host() -> None:
    attributes = {
        "peer.service": "user-service",
        "server.address": "10.0.0.7",
        "net.peer.name": "ignored",
        "url.full": "http://also-ignored/",
        "http.method": "POST",
    }
    assert client_metric_name(attributes, "POST") == "user-service.POST"


def test_server_address_comes_before_net_peer_name_and_url() -> None:
    attributes = {
        "server.address": "new.example",
        "net.peer.name": "old.example",
        "url.full": "http://url.example/",
        "http.request.method": "GET",
    }
    assert client_metric_name(attributes, "GET") == "new_example.GET"


def test_net_peer_name_comes_before_url() -> None:
    attributes = {"net.peer.name": "peer.example", "http.url": "http://url.example/"}
    assert client_metric_name(attributes, "GET") == "peer_example.GET"


def test_url_full_comes_before_http_url() -> None:
    attributes = {"url.full": "http://full.example/", "http.url": "http://old.example/"}
    assert client_metric_name(attributes, "GET") == "full_example.GET"


def test_host_names_are_lowercased_but_peer_service_is_not() -> None:
    assert client_metric_name({"server.address": "Cache.Example"}, "GET") == "cache_example.GET"
    assert client_metric_name({"peer.service": "UserService"}, "GET") == "UserService.GET"


def test_ports_are_never_part_of_the_name() -> None:
    one = client_metric_name({"server.address": "h", "server.port": 1, "http.method": "GET"}, "x")
    two = client_metric_name({"net.peer.name": "h", "net.peer.port": 2, "http.method": "GET"}, "x")
    three = client_metric_name({"url.full": "http://h:3/a", "http.method": "GET"}, "x")
    assert one == two == three == "h.GET"


def test_urls_never_put_their_path_or_query_in_the_name() -> None:
    names = {
        client_metric_name({"http.url": f"http://api.example/users/{n}?page={n}"}, "GET")
        for n in range(100)
    }
    assert names == {"api_example.GET"}


def test_ipv6_hosts() -> None:
    assert client_metric_name({"url.full": "http://[::1]:8080/x"}, "GET") == "1.GET"
    url = "http://[2001:DB8::7]/x"
    assert client_metric_name({"url.full": url}, "GET") == "2001_db8_7.GET"


def test_system_without_a_peer_names_the_dependency() -> None:
    assert client_metric_name({"db.system": "postgresql"}, "SELECT") == "postgresql.SELECT"


def test_stable_system_name_comes_before_the_old_one() -> None:
    attributes = {"db.system.name": "valkey", "db.system": "redis", "server.address": "h"}
    assert client_metric_name(attributes, "GET") == "valkey.h.GET"


def test_rpc_call_is_named_for_system_host_and_method() -> None:
    attributes = {
        "rpc.system": "grpc",
        "rpc.service": "helloworld.Greeter",
        "rpc.method": "SayHello",
        "server.address": "greeter.internal",
        "server.port": 50051,
    }
    name = client_metric_name(attributes, "helloworld.Greeter/SayHello")
    assert name == "grpc.greeter_internal.SayHello"


def test_rpc_service_names_the_peer_when_no_host_is_known() -> None:
    attributes = {"rpc.system": "grpc", "rpc.service": "helloworld.Greeter", "rpc.method": "Hi"}
    assert client_metric_name(attributes, "ignored") == "grpc.helloworld_Greeter.Hi"


def test_messaging_producer_is_named_for_system_and_operation() -> None:
    attributes = {"messaging.system": "kafka", "messaging.operation": "publish"}
    assert client_metric_name(attributes, "orders publish") == "kafka.publish"
    stable = {"messaging.system": "rabbitmq", "messaging.operation.name": "send"}
    assert client_metric_name(stable, "send orders") == "rabbitmq.send"


@pytest.mark.parametrize(
    ("attributes", "operation"),
    [
        ({"http.request.method": "PUT", "http.method": "POST"}, "PUT"),
        ({"http.method": "POST", "db.operation.name": "x"}, "POST"),
        ({"db.operation.name": "SELECT", "db.operation": "select"}, "SELECT"),
        ({"db.operation": "findAndModify", "rpc.method": "x"}, "findAndModify"),
        ({"rpc.method": "SayHello", "messaging.operation.name": "x"}, "SayHello"),
        ({"messaging.operation.name": "send", "messaging.operation": "publish"}, "send"),
        ({"messaging.operation": "publish"}, "publish"),
        ({}, "the_span_name"),
    ],
)
def test_operation_precedence(attributes: dict[str, object], operation: str) -> None:
    found = {"peer.service": "dep", **attributes}
    assert client_metric_name(found, "the span name") == f"dep.{operation}"


# -- client_metric_name: nothing usable ------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        {},
        {"http.method": "GET"},
        {"peer.service": ""},
        {"server.address": ("a", "b")},
        {"url.full": "/no/host"},
        {"http.url": "http://[::1/broken"},
    ],
)
def test_without_a_dependency_the_name_is_the_safe_span_name(
    attributes: dict[str, object] | None,
) -> None:
    assert client_metric_name(attributes, "fetch thing.v2") == "fetch_thing_v2"


def test_empty_values_are_skipped_for_the_next_attribute() -> None:
    attributes = {
        "peer.service": "",
        "server.address": "",
        "net.peer.name": "db1",
        "http.method": "",
    }
    assert client_metric_name(attributes, "query") == "db1.query"


def test_scalar_values_that_are_not_text_are_used_as_text() -> None:
    assert client_metric_name({"peer.service": 42, "rpc.method": True}, "x") == "42.True"


def test_every_segment_is_bounded() -> None:
    long_host = "h" * 300 + ".example"
    attributes = {"db.system": "s" * 300, "server.address": long_host, "db.operation": "o" * 300}
    name = client_metric_name(attributes, "x")
    system, peer, operation = name.split(".")
    assert (system, peer, operation) == ("s" * 64, "h" * 64, "o" * 64)


def test_unicode_everywhere_still_gives_an_ascii_name() -> None:
    attributes = {"peer.service": "サービス", "http.method": "取得"}
    assert client_metric_name(attributes, "名前") == "unknown.unknown"
    accented = {"url.full": "http://bücher.example/", "http.method": "GET"}
    assert client_metric_name(accented, "x") == "b_cher_example.GET"
