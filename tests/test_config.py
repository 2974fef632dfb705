"""Tests for baseplate.config."""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from baseplate import config
from baseplate.config import ConfigurationError, EndpointConfiguration


def parse_one(parser: Callable[[str], Any], text: str) -> Any:
    """Parse one value through parse_config under the key ``opt``."""
    return config.parse_config({"opt": text}, {"opt": parser}).opt


def assert_rejected(parser: Callable[[str], Any], text: str, key: str = "opt") -> str:
    """Assert that ``text`` fails to parse and the error names the key and value."""
    with pytest.raises(ConfigurationError) as info:
        config.parse_config({key: text}, {key: parser})
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"{key}: invalid value {text!r}: ")
    return message


# The reference's examples, as written.

CARDS = config.OneOf(clubs=1, spades=2, diamonds=3, hearts=4)


def test_reference_example(tmp_path: Path) -> None:
    some_file = tmp_path / "whatever.txt"
    some_file.write_text("cool")
    raw_config = {
        "simple": "true",
        "cards": "clubs, spades, diamonds",
        "nested.once": "1",
        "nested.really.deep": "3 seconds",
        "some_file": str(some_file),
        "sample_rate": "37.1%",
        "interval": "30 seconds",
    }
    cfg = config.parse_config(
        raw_config,
        {
            "simple": config.Boolean,
            "cards": config.TupleOf(CARDS),
            "nested": {
                "once": config.Integer,
                "really": {
                    "deep": config.Timespan,
                },
            },
            "some_file": config.File(mode="r"),
            "optional": config.Optional(config.Integer, default=9001),
            "sample_rate": config.Percent,
            "interval": config.Fallback(config.Timespan, config.Integer),
        },
    )
    assert cfg.simple is True
    assert cfg.cards == [1, 2, 3]
    assert cfg.nested.once == 1
    assert str(cfg.nested.really.deep) == "0:00:03"
    assert cfg.some_file.read() == "cool"
    cfg.some_file.close()
    assert cfg.optional == 9001
    assert cfg.sample_rate == 0.371
    assert str(cfg.interval) == "0:00:30"


POPULATION = {
    "population.cn": "1383890000",
    "population.in": "1317610000",
    "population.us": "325165000",
    "population.id": "263447000",
    "population.br": "207645000",
}

COUNTRIES = {
    "countries.cn.population": "1383890000",
    "countries.cn.capital": "Beijing",
    "countries.in.population": "1317610000",
    "countries.in.capital": "New Delhi",
    "countries.us.population": "325165000",
    "countries.us.capital": "Washington D.C.",
    "countries.id.population": "263447000",
    "countries.id.capital": "Jakarta",
    "countries.br.population": "207645000",
    "countries.br.capital": "Brasília",
}


def test_dict_of_parser() -> None:
    cfg = config.parse_config(POPULATION, {"population": config.DictOf(config.Integer)})
    assert len(cfg.population) == 5
    assert cfg.population["br"] == 207645000
    assert list(cfg.population) == ["cn", "in", "us", "id", "br"]


def test_dict_of_nested_spec() -> None:
    cfg = config.parse_config(
        COUNTRIES,
        {"countries": config.DictOf({"population": config.Integer, "capital": config.String})},
    )
    assert len(cfg.countries) == 5
    assert cfg.countries["cn"].capital == "Beijing"
    assert cfg.countries["id"].population == 263447000
    assert cfg.countries["br"].capital == "Brasília"


# parse_config and its result.


def test_result_is_a_dict_with_attribute_access() -> None:
    cfg = config.parse_config({"a.b": "x"}, {"a": {"b": config.String}})
    assert isinstance(cfg, config.ConfigNamespace)
    assert cfg == {"a": {"b": "x"}}
    assert cfg["a"]["b"] == cfg.a.b == "x"
    assert not hasattr(cfg, "missing")


def test_keys_not_in_spec_are_ignored() -> None:
    cfg = config.parse_config({"a": "1", "unrelated": "x"}, {"a": config.Integer})
    assert cfg == {"a": 1}


def test_missing_key_is_parsed_as_empty_string() -> None:
    cfg = config.parse_config(
        {},
        {
            "name": config.Optional(config.String),
            "empty": config.Optional(config.String, default=""),
            "n": config.Optional(config.Integer),
        },
    )
    assert cfg == {"name": None, "empty": "", "n": None}


def test_missing_string_is_required() -> None:
    # As in the original, String rejects the empty string, so a String key
    # left out of the file is an error; Optional(String) allows it.
    with pytest.raises(ConfigurationError, match=r"^name: required but missing$"):
        config.parse_config({}, {"name": config.String})
    assert assert_rejected(config.String, "") == "opt: invalid value '': must not be empty"


def test_missing_required_key_names_full_dotted_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        config.parse_config({}, {"nested": {"once": config.Integer}})
    assert info.value.key == "nested.once"
    assert info.value.error == "required but missing"
    assert str(info.value) == "nested.once: required but missing"
    assert isinstance(info.value.__cause__, ValueError)


def test_invalid_nested_value_names_key_and_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        config.parse_config({"nested.once": "1.5"}, {"nested": {"once": config.Integer}})
    assert str(info.value) == "nested.once: invalid value '1.5': not a whole number"
    assert isinstance(info.value.__cause__, ValueError)


def test_empty_but_present_value_is_invalid_not_missing() -> None:
    message = assert_rejected(config.Integer, "")
    assert "missing" not in message


def test_user_callable() -> None:
    assert parse_one(lambda text: text.upper(), "abc") == "ABC"


def test_user_callable_failure_includes_its_message() -> None:
    def even(text: str) -> int:
        value = int(text)
        if value % 2:
            raise RuntimeError("must be even")
        return value

    assert parse_one(even, "4") == 4
    assert assert_rejected(even, "3") == "opt: invalid value '3': must be even"


def test_result_attributes_can_be_set_and_deleted_like_keys() -> None:
    cfg = config.parse_config({"a": "1"}, {"a": config.Integer})
    cfg.b = 2
    assert cfg == {"a": 1, "b": 2}
    del cfg.a
    assert cfg == {"b": 2}
    with pytest.raises(AttributeError):
        del cfg.a


def test_configuration_error() -> None:
    error = ConfigurationError("a.b", "bad")
    assert (error.key, error.error) == ("a.b", "bad")
    assert str(error) == "a.b: bad"
    # What parse_config raises for a bad value: exactly this class (callers
    # catch it by name), with the full dotted key and the rejected value.
    with pytest.raises(ConfigurationError) as info:
        config.parse_config({"a.b": "x"}, {"a": {"b": config.Integer}})
    assert type(info.value) is ConfigurationError
    assert (info.value.key, info.value.error) == ("a.b", "invalid value 'x': not a whole number")
    assert str(info.value) == "a.b: invalid value 'x': not a whole number"


# Value types.


def test_string() -> None:
    assert parse_one(config.String, " any text ") == " any text "
    assert config.String("whatever") == "whatever"
    with pytest.raises(ValueError, match="must not be empty"):
        config.String("")


@pytest.mark.parametrize(("text", "value"), [("1.5", 1.5), ("-2", -2.0), ("1e3", 1000.0)])
def test_float(text: str, value: float) -> None:
    assert parse_one(config.Float, text) == value


def test_float_rejects_non_numbers() -> None:
    assert assert_rejected(config.Float, "one") == "opt: invalid value 'one': not a number"


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), ("-7", -7)])
def test_integer(text: str, value: int) -> None:
    assert parse_one(config.Integer, text) == value


@pytest.mark.parametrize("text", ["1.5", "1.0", "ten", "0x10"])
def test_integer_rejects_non_whole_numbers(text: str) -> None:
    assert assert_rejected(config.Integer, text).endswith("not a whole number")


def test_integer_base() -> None:
    assert parse_one(config.Integer(base=16), "ff") == 255
    assert parse_one(config.Integer(base=16), "0x10") == 16
    assert config.Integer("17") == 17
    assert config.Integer("17", base=8) == 15
    assert assert_rejected(config.Integer(base=16), "fg").endswith("not a whole number in base 16")


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("True", True), ("FALSE", False), ("false", False)]
)
def test_boolean(text: str, value: bool) -> None:
    assert parse_one(config.Boolean, text) is value


@pytest.mark.parametrize("text", ["yes", "1", "on", "truthy"])
def test_boolean_rejects_anything_else(text: str) -> None:
    assert_rejected(config.Boolean, text)


def test_endpoint_inet() -> None:
    endpoint = parse_one(config.Endpoint, "localhost:9090")
    assert endpoint == EndpointConfiguration(socket.AF_INET, ("localhost", 9090))
    assert endpoint.family == socket.AF_INET
    assert endpoint.address == ("localhost", 9090)
    assert isinstance(endpoint.address, config.InternetAddress)
    assert (endpoint.address.host, endpoint.address.port) == ("localhost", 9090)
    assert str(endpoint) == "localhost:9090"


def test_endpoint_inet6() -> None:
    endpoint = parse_one(config.Endpoint, "[::1]:80")
    assert endpoint == EndpointConfiguration(socket.AF_INET6, ("::1", 80))
    assert str(endpoint) == "[::1]:80"


def test_endpoint_unix() -> None:
    endpoint = parse_one(config.Endpoint, "/var/run/app.sock")
    assert endpoint == EndpointConfiguration(socket.AF_UNIX, "/var/run/app.sock")
    assert str(endpoint) == "/var/run/app.sock"


def test_endpoint_connects() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        endpoint = parse_one(config.Endpoint, f"127.0.0.1:{server.getsockname()[1]}")
        with socket.socket(endpoint.family, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", endpoint.address)
        assert server.recv(4) == b"ping"


@pytest.mark.parametrize(
    "text", ["localhost", "localhost:", ":80", "host:http", "host:65536", "host:-1", "::1:80"]
)
def test_endpoint_rejects_bad_input(text: str) -> None:
    assert_rejected(config.Endpoint, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 second", datetime.timedelta(seconds=1)),
        ("3 days", datetime.timedelta(days=3)),
        ("250 milliseconds", datetime.timedelta(milliseconds=250)),
        ("1 millisecond", datetime.timedelta(milliseconds=1)),
        ("2 minutes", datetime.timedelta(minutes=2)),
        ("1 minute", datetime.timedelta(minutes=1)),
        ("90 minutes", datetime.timedelta(minutes=90)),
        ("2 hours", datetime.timedelta(hours=2)),
        ("1 day", datetime.timedelta(days=1)),
        ("30 Seconds", datetime.timedelta(seconds=30)),
    ],
)
def test_timespan(text: str, value: datetime.timedelta) -> None:
    assert parse_one(config.Timespan, text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3",
        "seconds",
        "a b",
        "a b c",
        "3 fortnights",
        "-1 second",
        "3 seconds ago",
        # The original parsed the count with int(): fractions were never valid.
        "1.5 hours",
        "3.2 hours",
    ],
)
def test_timespan_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="expected a whole number and a unit"):
        config.Timespan(text)
    if text:
        assert_rejected(config.Timespan, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("250 milliseconds", 0.25),
        ("5 minutes", 300.0),
        ("0 seconds", 0.0),
        ("inf", float("inf")),
    ],
)
def test_seconds_are_numbers_or_timespans(text: str, value: float) -> None:
    parsed = parse_one(config.Seconds, text)
    assert parsed == value
    assert isinstance(parsed, float)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("soon", "expected seconds, such as '30' or '30 seconds'"),
        ("1.5 hours", "expected seconds, such as '30' or '30 seconds'"),
        ("-1", "must not be negative"),
        ("nan", "must not be negative"),
    ],
)
def test_seconds_reject_bad_input_saying_why(text: str, error: str) -> None:
    assert assert_rejected(config.Seconds, text).endswith(error)


def test_base64() -> None:
    assert parse_one(config.Base64, "  aGVsbG8=\n") == b"hello"
    assert config.Base64("aHVudGVyMg==") == b"hunter2"


def test_base64_may_be_wrapped_over_lines() -> None:
    assert config.Base64("aGVs\n  bG8g\td29y bGQ=") == b"hello world"


@pytest.mark.parametrize("text", ["aGVsbG8", "dGvzdAo", "not base64!", "aGVs*bG8="])
def test_base64_rejects_bad_input(text: str) -> None:
    assert assert_rejected(config.Base64, text).endswith("not valid base64")
    with pytest.raises(ValueError):
        config.Base64(text)


@pytest.mark.parametrize("text", ["", " \n "])
def test_base64_rejects_empty_input(text: str) -> None:
    with pytest.raises(ValueError, match="no base64 data"):
        config.Base64(text)


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00data")
    with parse_one(config.File(), str(path)) as text_file:
        assert text_file.mode == "r"
    with parse_one(config.File(mode="rb"), str(path)) as binary_file:
        assert binary_file.read() == b"\x00data"


def test_file_rejects_nonexistent_path(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.txt")
    message = assert_rejected(config.File(), path)
    assert message.endswith("cannot open file: No such file or directory")
    # Called directly, the parser raises ValueError like every other parser.
    with pytest.raises(ValueError, match="cannot open file") as info:
        config.File()(path)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(ValueError, match="cannot open file"):
        config.File()(str(tmp_path))  # a directory


@pytest.mark.parametrize(
    ("text", "value"), [("37.1%", 0.371), ("44%", 0.44), ("0%", 0.0), ("100%", 1.0)]
)
def test_percent(text: str, value: float) -> None:
    assert parse_one(config.Percent, text) == value


@pytest.mark.parametrize("text", ["37.1", "0.5", "101%", "-1%", "%", "lots%"])
def test_percent_rejects_bad_input(text: str) -> None:
    assert_rejected(config.Percent, text)


@pytest.mark.parametrize(
    ("parser", "own_name", "own_id", "unknown"),
    [
        pytest.param(
            config.UnixUser, pwd.getpwuid(os.getuid()).pw_name, os.getuid(), "user", id="user"
        ),
        pytest.param(
            config.UnixGroup, grp.getgrgid(os.getgid()).gr_name, os.getgid(), "group", id="group"
        ),
    ],
)
def test_unix_names_are_parsed_into_ids(
    parser: Callable[[str], int], own_name: str, own_id: int, unknown: str
) -> None:
    assert parse_one(parser, "root") == 0
    assert parse_one(parser, own_name) == own_id
    assert assert_rejected(parser, f"no-such-{unknown}-xyz").endswith(f"no such {unknown}")


def test_one_of() -> None:
    suits = config.OneOf(hearts="H", spades="S")
    assert parse_one(suits, "hearts") == "H"
    assert parse_one(suits, "spades") == "S"
    message = assert_rejected(suits, "clubs")
    assert message.endswith("expected one of hearts, spades")


def test_tuple_of() -> None:
    numbers = config.TupleOf(config.Integer)
    assert parse_one(numbers, "1") == [1]
    assert parse_one(numbers, " 1 ,2,  3 ,") == [1, 2, 3]


def test_tuple_of_requires_a_value() -> None:
    assert assert_rejected(config.TupleOf(config.String), " , ").endswith(
        "at least one value is required"
    )
    with pytest.raises(ConfigurationError, match=r"^opt: required but missing$"):
        config.parse_config({}, {"opt": config.TupleOf(config.String)})


def test_tuple_of_bad_item_names_key_and_item() -> None:
    with pytest.raises(ConfigurationError) as info:
        config.parse_config({"a.list": "1, x"}, {"a": {"list": config.TupleOf(config.Integer)}})
    assert str(info.value) == "a.list: invalid value '1, x': item 'x': not a whole number"


# Combining types.


def test_optional() -> None:
    maybe = config.Optional(config.Integer)
    assert parse_one(maybe, "5") == 5
    assert parse_one(maybe, "") is None
    assert parse_one(config.Optional(config.Integer, default=9001), "") == 9001
    assert parse_one(config.Optional(config.TupleOf(config.String), default=[]), "") == []


def test_optional_rejects_bad_value() -> None:
    assert assert_rejected(config.Optional(config.Integer), "x").endswith("not a whole number")


def test_fallback() -> None:
    interval = config.Fallback(config.Timespan, config.Integer)
    assert parse_one(interval, "30 seconds") == datetime.timedelta(seconds=30)
    assert parse_one(interval, "30") == 30


def test_fallback_reports_both_failures() -> None:
    message = assert_rejected(config.Fallback(config.Timespan, config.Integer), "soon")
    assert "such as '3 seconds'" in message
    assert message.endswith("and as a fallback: not a whole number")


def test_dict_of_bad_value_names_full_key() -> None:
    raw = {**POPULATION, "population.br": "lots"}
    with pytest.raises(ConfigurationError) as info:
        config.parse_config(raw, {"population": config.DictOf(config.Integer)})
    assert info.value.key == "population.br"
    assert str(info.value) == "population.br: invalid value 'lots': not a whole number"


def test_dict_of_nested_spec_missing_key_names_full_key() -> None:
    raw = {"countries.fr.capital": "Paris"}
    with pytest.raises(ConfigurationError) as info:
        config.parse_config(raw, {"countries": config.DictOf({"population": config.Integer})})
    assert str(info.value) == "countries.fr.population: required but missing"


def test_dict_of_with_no_matching_keys_is_empty() -> None:
    cfg = config.parse_config({"populations": "1"}, {"population": config.DictOf(config.Integer)})
    assert cfg.population == {}


def test_dict_of_inside_nested_spec_and_of_dict_of() -> None:
    raw = {"app.limits.eu.fr": "1", "app.limits.eu.de": "2", "app.limits.us.ca": "3"}
    cfg = config.parse_config(
        raw, {"app": {"limits": config.DictOf(config.DictOf(config.Integer))}}
    )
    assert cfg.app.limits == {"eu": {"fr": 1, "de": 2}, "us": {"ca": 3}}
    assert cfg.app.limits["eu"].de == 2


def test_at_least_bounds_integers():
    spec = {"size": config.at_least(1)}
    assert config.parse_config({"size": "3"}, spec).size == 3
    with pytest.raises(config.ConfigurationError) as info:
        config.parse_config({"size": "0"}, spec)
    assert "size" in str(info.value) and "at least 1" in str(info.value)


# DictOf, SpecParser and CallableParser used directly, as the original allowed.


def test_dict_of_parse_scalar_children() -> None:
    parser = config.DictOf(config.Integer)
    assert parser.parse("my_key", {"my_key.a": "1", "my_key.b": "2", "other.c": "3"}) == {
        "a": 1,
        "b": 2,
    }
    assert parser.parse("my_key", {"not_related": "a", "my_keys.a": "1"}) == {}


def test_dict_of_parse_vector_children_and_root_level() -> None:
    parser = config.DictOf({"a": config.Integer, "b": config.String})
    raw = {
        "first.a": "1",
        "first.b": "test",
        "first.c": "ignored",
        "second.a": "2",
        "second.b": "test",
    }
    expected = {"first": {"a": 1, "b": "test"}, "second": {"a": 2, "b": "test"}}
    assert parser.parse("", raw) == expected
    nested = parser.parse("my.key", {f"my.key.{k}": v for k, v in raw.items()})
    assert nested == expected
    assert nested["second"].a == 2


def test_spec_parser_reads_a_group_under_a_dotted_prefix() -> None:
    # How a component reads its options under a prefix chosen at run time
    # (``transit.vault.`` ...): the prefix is a key path, not a spec key.
    parser = config.SpecParser({"timeout": config.Timespan, "retries": config.Integer})
    raw = {"transit.vault.timeout": "3 seconds", "transit.vault.retries": "2"}
    options = parser.parse("transit.vault", raw)
    assert options == {"timeout": datetime.timedelta(seconds=3), "retries": 2}
    with pytest.raises(ConfigurationError) as info:
        parser.parse("transit.vault", {"transit.vault.timeout": "3 seconds"})
    assert str(info.value) == "transit.vault.retries: required but missing"


def test_callable_parser_names_its_key() -> None:
    parser = config.CallableParser(config.Integer)
    assert parser.parse("a.b", {"a.b": "7"}) == 7
    with pytest.raises(ConfigurationError, match=r"^a\.b: invalid value 'x': "):
        parser.parse("a.b", {"a.b": "x"})


def test_from_spec() -> None:
    dict_of = config.DictOf(config.Integer)
    assert config.Parser.from_spec(dict_of) is dict_of
    assert isinstance(config.Parser.from_spec({"a": config.Integer}), config.SpecParser)
    callable_parser = config.Parser.from_spec(config.Integer)
    assert isinstance(callable_parser, config.CallableParser)
    assert callable_parser.callable is config.Integer


def test_custom_parser_in_a_spec() -> None:
    class Prefixed(config.Parser):
        """Every key under the prefix, unparsed."""

        def parse(self, key_path: str, raw_config: Mapping[str, str]) -> dict[str, str]:
            prefix = key_path + "."
            return {k[len(prefix) :]: v for k, v in raw_config.items() if k.startswith(prefix)}

    cfg = config.parse_config({"env.HOME": "/root", "env.a.b": "c"}, {"env": Prefixed()})
    assert cfg.env == {"HOME": "/root", "a.b": "c"}


# A spec that no configuration could satisfy is a bug: AssertionError, as in
# the original, naming the key, and raised even if the configuration is empty.


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"foo.bar": {}}, "invalid config spec at 'foo.bar': dots are not allowed in keys"),
        ({"tree_people": 37}, "invalid config spec at 'tree_people': 37 is not a parser"),
        ({"a": {"b": {"c": "x"}}}, "invalid config spec at 'a.b.c': 'x' is not a parser"),
        ({"a": {"b.c": config.Integer}}, "invalid config spec at 'a.b.c': dots are not allowed"),
    ],
)
def test_invalid_spec_is_an_assertion_error_naming_the_key(
    spec: config.ConfigSpec, message: str
) -> None:
    with pytest.raises(AssertionError) as info:
        config.parse_config({}, spec)
    assert str(info.value).startswith(message)


def test_invalid_dict_of_spec_fails_when_made() -> None:
    with pytest.raises(AssertionError, match=r"^invalid config spec: 37 is not a parser"):
        config.DictOf(37)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match=r"^invalid config spec at 'b': None is not a parser"):
        config.DictOf({"b": None})  # type: ignore[dict-item]


# warn_unknown_keys: a key under a prefix Baseplate owns that no spec reads is a typo.


def unknown_key_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == config.UNKNOWN_KEYS_LOGGER and record.levelname == "WARNING"
    ]


def test_unknown_keys_under_the_prefix_are_warned_with_the_closest_known_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec: config.ConfigSpec = {
        "metrics": {"namespace": config.String, "endpoint": config.Optional(config.String)}
    }
    raw = {
        "metrics.namspace": "x",
        "metrics.namespace": "y",
        "metrics.flavour": "z",
        "metricsnamespace": "not under the prefix",
        "other.namspace": "not under the prefix",
    }
    with caplog.at_level("WARNING", logger=config.UNKNOWN_KEYS_LOGGER):
        unknown = config.warn_unknown_keys(raw, spec, "metrics.")
    assert unknown == ["metrics.namspace", "metrics.flavour"]
    assert unknown_key_warnings(caplog) == [
        "unknown configuration key metrics.namspace: did you mean metrics.namespace?",
        "unknown configuration key metrics.flavour",
    ]


def test_keys_read_by_dict_of_and_custom_parsers_are_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Anything(config.Parser):
        def parse(self, key_path: str, raw_config: Mapping[str, str]) -> None:
            return None

    spec: config.ConfigSpec = {
        "app": {
            "hosts": config.DictOf(config.String),
            "extra": Anything(),
            "group": config.SpecParser({"size": config.Integer}),
        }
    }
    raw = {
        "app.hosts.a": "1",
        "app.hosts.b.c": "2",
        "app.extra": "3",
        "app.extra.deep": "4",
        "app.group.size": "5",
        "app.group.sise": "6",
    }
    with caplog.at_level("WARNING", logger=config.UNKNOWN_KEYS_LOGGER):
        assert config.warn_unknown_keys(raw, spec, "app.") == ["app.group.sise"]
    assert unknown_key_warnings(caplog) == [
        "unknown configuration key app.group.sise: did you mean app.group.size?"
    ]


def test_an_empty_prefix_checks_every_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger=config.UNKNOWN_KEYS_LOGGER):
        unknown = config.warn_unknown_keys(
            {"stop_timout": "3", "max_concurrency": "1"},
            {"stop_timeout": config.Seconds, "max_concurrency": config.Integer},
            "",
        )
    assert unknown == ["stop_timout"]
    assert unknown_key_warnings(caplog) == [
        "unknown configuration key stop_timout: did you mean stop_timeout?"
    ]


def test_unknown_key_warnings_are_silenced_through_their_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("ERROR", logger=config.UNKNOWN_KEYS_LOGGER):
        unknown = config.warn_unknown_keys({"a.b": "1"}, {"a": {"c": config.String}}, "a.")
    assert unknown == ["a.b"]
    assert unknown_key_warnings(caplog) == []
