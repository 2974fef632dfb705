"""Configuration parsing and validation.

Applications receive their configuration as a flat mapping of strings (the
``[app:main]`` section of an INI file). :func:`parse_config` checks that mapping
against a *spec* and returns a typed, nested object, so that bad configuration
fails loudly at start-up rather than deep inside a request::

    cfg = config.parse_config(raw_config, {
        "timeout": config.Timespan,
        "backend": {
            "endpoint": config.Endpoint,
            "retries": config.Optional(config.Integer, default=3),
        },
    })
    cfg.backend.endpoint  # an EndpointConfiguration

A spec maps names to parsers. A parser is any callable that takes the raw
string and returns the parsed value, raising an exception if the text is
invalid; the functions below are the ready-made ones. Nested dicts group keys
that share a dotted prefix (``backend.endpoint``), and :class:`DictOf` groups
keys whose names are not known in advance.
"""

from __future__ import annotations

import abc
import base64
import datetime
import difflib
import grp
import logging
import pwd
import re
import socket
from collections.abc import Callable, Mapping
from typing import IO, Any, NamedTuple, TypeAlias, TypeVar, overload

__all__ = [
    "UNKNOWN_KEYS_LOGGER",
    "Base64",
    "Boolean",
    "CallableParser",
    "ConfigNamespace",
    "ConfigSpec",
    "ConfigurationError",
    "DictOf",
    "Endpoint",
    "EndpointConfiguration",
    "Fallback",
    "File",
    "Float",
    "Integer",
    "InternetAddress",
    "OneOf",
    "Optional",
    "Parser",
    "Percent",
    "Seconds",
    "SpecParser",
    "String",
    "Timespan",
    "TupleOf",
    "UnixGroup",
    "UnixUser",
    "at_least",
    "parse_config",
    "warn_unknown_keys",
]

_T = TypeVar("_T")
_U = TypeVar("_U")

UNKNOWN_KEYS_LOGGER = "baseplate.config.unknown_keys"
"""The logger :func:`warn_unknown_keys` warns through; set it to ``ERROR`` to
silence the warnings.

.. versionadded:: 0.31
"""
_unknown_keys_logger = logging.getLogger(UNKNOWN_KEYS_LOGGER)


class ConfigurationError(Exception):
    """Raised when the configuration violates the spec.

    :param key: The full dotted name of the offending key, e.g. ``nested.once``.
    :param error: What is wrong with its value.
    """

    def __init__(self, key: str, error: str) -> None:
        super().__init__(key, error)
        self.key = key
        self.error = error

    def __str__(self) -> str:
        return f"{self.key}: {self.error}"


class InternetAddress(NamedTuple):
    """The address of an :data:`socket.AF_INET` or :data:`socket.AF_INET6` endpoint.

    A ``(host, port)`` pair, as :meth:`socket.socket.connect` takes it, whose
    parts can also be read by name.
    """

    host: str
    port: int


class EndpointConfiguration(NamedTuple):
    """A description of a remote endpoint, as returned by :func:`Endpoint`.

    ``family`` and ``address`` are ready for :class:`socket.socket` and
    :meth:`socket.socket.connect`. ``str()`` gives back the configured form.
    """

    family: socket.AddressFamily
    """One of :data:`socket.AF_INET`, :data:`socket.AF_INET6` or :data:`socket.AF_UNIX`."""

    address: tuple[str, int] | str
    """A ``(host, port)`` pair (:func:`Endpoint` gives an :class:`InternetAddress`),
    or the socket path for :data:`socket.AF_UNIX`."""

    def __str__(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        if self.family == socket.AF_INET6:
            return f"[{host}]:{port}"
        return f"{host}:{port}"


class ConfigNamespace(dict[str, Any]):
    """The parsed configuration: a dict whose keys are also its attributes.

    ``cfg.nested.once`` is ``cfg["nested"]["once"]``, and setting or deleting
    an attribute sets or deletes the key, as in the original. Keys that clash
    with dict methods (``items``, ``keys``...) must be read with subscripts.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class _InvalidSpecError(AssertionError):
    """A spec that cannot describe any configuration: a bug in the program.

    It is an :exc:`AssertionError`, as the original raised, because no
    configuration file can fix it. ``key`` is the dotted path of the bad entry
    within the spec (empty for the spec itself), so that nested specs can
    report the full path.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def under(self, parent: str) -> _InvalidSpecError:
        return _InvalidSpecError(f"{parent}.{self.key}" if self.key else parent, self.problem)

    def __str__(self) -> str:
        if not self.key:
            return f"invalid config spec: {self.problem}"
        return f"invalid config spec at {self.key!r}: {self.problem}"


class Parser(abc.ABC):
    """Parses one part of the raw configuration: the base of spec nodes.

    :func:`parse_config` turns a spec into a tree of parsers with
    :meth:`from_spec` and parses from its root. A parser can also be used on
    its own, to read a group of keys under a prefix that is only known at run
    time::

        options = config.SpecParser({"timeout": config.Timespan}).parse("backend", raw)
        options.timeout  # parsed from "backend.timeout"

    Subclasses can be put in a spec to parse keys in ways the built-in nodes
    do not.
    """

    @staticmethod
    def from_spec(spec: _SpecNode) -> Parser:
        """Return the parser for a spec node.

        A :class:`Parser` is returned as is, a dict becomes a
        :class:`SpecParser` and any other callable a :class:`CallableParser`.

        :raises AssertionError: ``spec`` is none of these, or a dict in it has
            a key containing a dot; the message names the offending key.
        """
        if isinstance(spec, Parser):
            return spec
        if isinstance(spec, dict):
            return SpecParser(spec)
        if callable(spec):
            return CallableParser(spec)
        raise _InvalidSpecError("", f"{spec!r} is not a parser, a spec dict or a DictOf")

    @abc.abstractmethod
    def parse(self, key_path: str, raw_config: Mapping[str, str]) -> Any:
        """Parse and return the part of ``raw_config`` at ``key_path``.

        :param key_path: The dotted key this parser reads, or the prefix of
            the keys it reads; ``""`` for the root of the configuration.
        :param raw_config: The whole raw configuration.
        :raises ConfigurationError: A value violates the spec.
        """


class SpecParser(Parser):
    """Parses a fixed group of keys, as a nested dict in a spec does.

    The spec is checked when the parser is made, so that a mistake in it is
    found at start-up even if the configuration never reaches it.

    :param spec: Names mapped to parsers, nested specs or :class:`DictOf`.
    :raises AssertionError: A key contains a dot (nest a dict instead), or a
        value is not a spec node; the message names the full key in the spec.
    """

    def __init__(self, spec: ConfigSpec) -> None:
        self.spec = spec
        self._parsers: dict[str, Parser] = {}
        for key, node in spec.items():
            if "." in key:
                raise _InvalidSpecError(key, "dots are not allowed in keys; nest a dict instead")
            try:
                self._parsers[key] = Parser.from_spec(node)
            except _InvalidSpecError as exc:
                raise exc.under(key) from None

    def parse(self, key_path: str, raw_config: Mapping[str, str]) -> ConfigNamespace:
        """Parse each key of the spec under ``key_path`` into a :class:`ConfigNamespace`."""
        prefix = f"{key_path}." if key_path else ""
        return ConfigNamespace(
            {key: parser.parse(prefix + key, raw_config) for key, parser in self._parsers.items()}
        )


class CallableParser(Parser):
    """Parses the single key at ``key_path`` with a callable such as :func:`Integer`.

    :param callable_: Takes the raw string (``""`` when the key is absent)
        and returns the value, raising an exception if the string is invalid.
    """

    def __init__(self, callable_: Callable[[str], Any]) -> None:
        self.callable = callable_

    def parse(self, key_path: str, raw_config: Mapping[str, str]) -> Any:
        """Return the parsed value, or raise :exc:`ConfigurationError` naming the key."""
        text = raw_config.get(key_path, "")
        try:
            return self.callable(text)
        except Exception as exc:
            if key_path not in raw_config:
                raise ConfigurationError(key_path, "required but missing") from exc
            raise ConfigurationError(key_path, f"invalid value {text!r}: {exc}") from exc


class DictOf(Parser):
    """A group of options whose names are not known in advance.

    Every key under the prefix is collected by its first dotted component and
    parsed with ``spec``, which may be a parser, a nested spec dict or another
    :class:`DictOf`. The result maps each name to its parsed value, and is
    empty if no key has the prefix. For example, with ``population.us = 3``
    and ``population.br = 2``, ``{"population": DictOf(Integer)}`` parses to
    ``{"us": 3, "br": 2}``; with ``countries.br.capital = Brasília``,
    ``{"countries": DictOf({"capital": String})}`` gives
    ``cfg.countries["br"].capital == "Brasília"``.

    As a :class:`Parser`, ``DictOf(spec).parse("", raw_config)`` groups every
    key of the configuration by its first component.

    :param spec: How to parse each member of the group.
    :type spec: :class:`Parser`, a parser function, :data:`ConfigSpec` or :class:`DictOf`
    :raises AssertionError: ``spec`` is not a valid spec node.
    """

    def __init__(self, spec: _SpecNode) -> None:
        self.spec = spec
        self.subparser = Parser.from_spec(spec)

    def __repr__(self) -> str:
        return f"DictOf({self.spec!r})"

    def parse(self, key_path: str, raw_config: Mapping[str, str]) -> ConfigNamespace:
        """Parse each member found under ``key_path`` into a :class:`ConfigNamespace`."""
        prefix = f"{key_path}." if key_path else ""
        # dict.fromkeys: each name once, in the order the configuration lists them.
        names = dict.fromkeys(
            key[len(prefix) :].split(".", 1)[0] for key in raw_config if key.startswith(prefix)
        )
        return ConfigNamespace(
            {name: self.subparser.parse(prefix + name, raw_config) for name in names if name}
        )


_SpecNode: TypeAlias = "Parser | Callable[[str], Any] | dict[str, _SpecNode]"

ConfigSpec: TypeAlias = "dict[str, _SpecNode]"
"""A spec: names mapped to parsers, :class:`DictOf` groups or nested specs.

.. versionadded:: 0.31
"""


def parse_under_prefix(
    raw_config: Mapping[str, str], prefix: str, spec: ConfigSpec
) -> ConfigNamespace:
    """Parse the keys under ``prefix`` (``"redis."``, ``"vault.secrets."``) with ``spec``.

    What every client's ``*_from_config`` does with its ``prefix`` argument;
    errors name the full key, prefix included.

    :raises ValueError: ``prefix`` is not dot-separated names ending with a dot.
    :raises ConfigurationError: A key is missing or has a bad value.

    .. versionadded:: 0.31
    """
    if not prefix.endswith("."):
        raise ValueError(f"prefix must end with a dot, not {prefix!r}")
    if not all(prefix[:-1].split(".")):
        raise ValueError(f"prefix must be dot-separated names ending with a dot, not {prefix!r}")
    return SpecParser(spec).parse(prefix[:-1], raw_config)


def parse_config(config: Mapping[str, str], spec: ConfigSpec) -> ConfigNamespace:
    """Parse the raw string options in ``config`` against ``spec``.

    A key missing from ``config`` is parsed as the empty string, so
    :func:`Optional` gives its default; for parsers that reject the empty
    string, :func:`String` among them, the key is reported as missing.

    :param config: The raw stringy configuration, e.g. an INI section.
    :param spec: What the configuration should look like.
    :type spec: ConfigSpec
    :raises ConfigurationError: The configuration violated the spec; the
        error names the full dotted key and the offending value.
    :raises AssertionError: The spec itself is invalid (a key containing a
        dot, or an entry that is not a parser, dict or :class:`DictOf`); the
        error names the key. This is a bug in the program, not in the
        configuration.
    :returns: A structured configuration object.
    """
    return SpecParser(spec).parse("", config)


def warn_unknown_keys(raw_config: Mapping[str, str], spec: ConfigSpec, prefix: str) -> list[str]:
    """Warn about each key under ``prefix`` that ``spec`` does not read: probably a typo.

    :func:`parse_config` ignores keys its spec does not mention, so that
    several components can share one configuration; a misspelled optional
    key (``metrics.namspace``) would then silently keep its default. A
    component that owns every key under a prefix calls this with the spec
    that lists all of them, and each unknown key is logged once, as a
    warning through :data:`UNKNOWN_KEYS_LOGGER`, with the closest known key
    when one is close enough::

        unknown configuration key metrics.namspace: did you mean metrics.namespace?

    A :class:`DictOf`, or any :class:`Parser` other than a spec dict, is
    taken to read every key under its own name.

    :param raw_config: The raw configuration, as given to :func:`parse_config`.
    :param spec: The spec of everything read under ``prefix``, rooted as the
        spec given to :func:`parse_config` is.
    :type spec: ConfigSpec
    :param prefix: The prefix owned, ending in a dot (``metrics.``), or
        ``""`` when every key of ``raw_config`` should be known.
    :returns: The unknown keys, in the order of ``raw_config``.

    .. versionadded:: 0.31
    """
    exact: set[str] = set()
    open_prefixes: list[str] = []
    _collect_known_keys(spec, "", exact, open_prefixes)
    unknown = [
        key
        for key in raw_config
        if key.startswith(prefix)
        and key not in exact
        and not any(key.startswith(open_prefix) for open_prefix in open_prefixes)
    ]
    # Compared without the prefix, which every candidate shares and would make alike.
    candidates = sorted(key[len(prefix) :] for key in exact if key.startswith(prefix))
    for key in unknown:
        close = difflib.get_close_matches(key[len(prefix) :], candidates, n=1)
        if close:
            _unknown_keys_logger.warning(
                "unknown configuration key %s: did you mean %s?", key, prefix + close[0]
            )
        else:
            _unknown_keys_logger.warning("unknown configuration key %s", key)
    return unknown


def _collect_known_keys(
    node: _SpecNode, key_path: str, exact: set[str], open_prefixes: list[str]
) -> None:
    """Add the keys ``node`` reads at ``key_path`` to ``exact``, or to ``open_prefixes``
    the prefixes under which it may read any key."""
    if isinstance(node, SpecParser):
        node = node.spec
    if isinstance(node, dict):
        for name, child in node.items():
            _collect_known_keys(
                child, f"{key_path}.{name}" if key_path else name, exact, open_prefixes
            )
    elif isinstance(node, Parser) and not isinstance(node, CallableParser):
        open_prefixes.append(f"{key_path}.")
        exact.add(key_path)
    else:
        exact.add(key_path)


def String(text: str) -> str:
    """A raw string, which must not be empty.

    A missing key is therefore reported as missing; wrap in :func:`Optional`
    to allow an empty or absent value.
    """
    if not text:
        raise ValueError("must not be empty")
    return text


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer no smaller than ``minimum``: ``at_least(1)`` for sizes and counts.

    .. versionadded:: 0.31
    """

    def parse(text: str) -> int:
        value = Integer(text)
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def Float(text: str) -> float:
    """A floating-point number."""
    try:
        return float(text)
    except ValueError:
        raise ValueError("not a number") from None


@overload
def Integer(text: str, base: int = 10) -> int: ...
@overload
def Integer(text: None = None, base: int = 10) -> Callable[[str], int]: ...
def Integer(text: str | None = None, base: int = 10) -> int | Callable[[str], int]:
    """An integer.

    Use it directly as a parser (``Integer``), or call it with a ``base`` to get
    a parser for that base (``Integer(base=16)``). To prevent mistakes,
    non-whole numbers such as ``1.5`` are an error rather than truncated.

    :param base: The base of the integer to parse.
    """
    if text is None:
        return lambda text: Integer(text, base)
    try:
        return int(text, base)
    except ValueError:
        in_base = "" if base == 10 else f" in base {base}"
        raise ValueError(f"not a whole number{in_base}") from None


def Boolean(text: str) -> bool:
    """``true`` or ``false``, case-insensitive; anything else is an error."""
    value = text.lower()
    if value not in ("true", "false"):
        raise ValueError("expected 'true' or 'false'")
    return value == "true"


def Endpoint(text: str) -> EndpointConfiguration:
    """A remote endpoint to connect to, as an :class:`EndpointConfiguration`.

    ``host:port`` gives :data:`socket.AF_INET` and an :class:`InternetAddress`.
    Text containing a slash (``/``) is the path of a Unix domain socket and
    gives :data:`socket.AF_UNIX` and the path.

    .. versionadded:: 0.31
       ``[host]:port``, with the host in brackets, gives :data:`socket.AF_INET6`.
    """
    if "/" in text:
        return EndpointConfiguration(socket.AF_UNIX, text)
    host, sep, port_text = text.rpartition(":")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        family, host = socket.AF_INET6, host[1:-1]
    if not sep or not host:
        raise ValueError("expected host:port or a socket path")
    if ":" in host and family == socket.AF_INET:
        raise ValueError("IPv6 addresses must be in brackets, as [host]:port")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return EndpointConfiguration(family, InternetAddress(host, int(port_text)))


_TIMESPAN_RE = re.compile(
    r"(?P<count>\d+)\s+(?P<unit>millisecond|second|minute|hour|day)s?", re.IGNORECASE
)


def Timespan(text: str) -> datetime.timedelta:
    """A span of time such as ``1 second``, ``3 days`` or ``250 milliseconds``.

    The count is a whole number, as in the original: write ``90 minutes``
    rather than ``1.5 hours``. Units are milliseconds, seconds, minutes, hours
    and days, singular or plural. Returns a :class:`datetime.timedelta`.
    """
    match = _TIMESPAN_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a whole number and a unit, such as '3 seconds'")
    unit = match["unit"].lower() + "s"
    return datetime.timedelta(**{unit: int(match["count"])})


def Seconds(text: str) -> float:
    """A duration in seconds, as a :class:`float`.

    The text is a number of seconds (``30``, ``0.5``) or a :func:`Timespan`
    (``30 seconds``, ``250 milliseconds``), so that an option can take
    either. Negative durations are an error; an option that cannot take zero
    or infinity must check for them.

    .. versionadded:: 0.31
    """
    try:
        value = float(text)
    except ValueError:
        try:
            value = Timespan(text).total_seconds()
        except ValueError:
            raise ValueError("expected seconds, such as '30' or '30 seconds'") from None
    if not value >= 0:  # also rejects NaN
        raise ValueError("must not be negative")
    return value


def Base64(text: str) -> bytes:
    """A base64-encoded block of binary data, which must not be empty.

    Whitespace is ignored, so a long value may be wrapped over several lines;
    any other character outside the base64 alphabet, or missing padding, is
    an error rather than silently dropped.
    """
    compact = "".join(text.split())
    if not compact:
        raise ValueError("no base64 data")
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError:
        raise ValueError("not valid base64") from None


def File(mode: str = "r") -> Callable[[str], IO[Any]]:
    """A path to a file, parsed into the file opened with :func:`open`.

    The caller owns the returned file and should close it. A file that cannot
    be opened (missing, unreadable, a directory) is a :exc:`ValueError`, like
    any other invalid value, so :func:`parse_config` reports it with the key.

    :param mode: The mode in which to open the file.
    """

    def open_file(path: str) -> IO[Any]:
        try:
            return open(path, mode)
        except OSError as exc:
            raise ValueError(f"cannot open file: {exc.strerror or exc}") from exc

    return open_file


def Percent(text: str) -> float:
    """A percentage such as ``37.2%`` or ``44%``, as a float from 0.0 to 1.0."""
    if not text.endswith("%"):
        raise ValueError("expected a percentage, such as '37.5%'")
    value = Float(text[:-1])
    if not 0 <= value <= 100:
        raise ValueError("must be from 0% to 100%")
    return value / 100


def UnixUser(text: str) -> int:
    """A Unix user name, parsed into its user id."""
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError("no such user") from None


def UnixGroup(text: str) -> int:
    """A Unix group name, parsed into its group id."""
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError("no such group") from None


def OneOf(**options: _T) -> Callable[[str], _T]:
    """One of several choices, each name mapped to the value it stands for.

    ``OneOf(hearts="H", spades="S")`` parses ``hearts`` into ``"H"``.
    """

    def choose(text: str) -> _T:
        try:
            return options[text]
        except KeyError:
            raise ValueError(f"expected one of {', '.join(options)}") from None

    return choose


def TupleOf(T: Callable[[str], _T]) -> Callable[[str], list[_T]]:
    """A comma-delimited list of values, each parsed with ``T``.

    Items are stripped of surrounding whitespace and empty items are ignored.
    At least one value is required; wrap in :func:`Optional` to allow none.
    """

    def parse_items(text: str) -> list[_T]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise ValueError("at least one value is required")
        values = []
        for item in items:
            try:
                values.append(T(item))
            except Exception as exc:
                raise ValueError(f"item {item!r}: {exc}") from exc
        return values

    return parse_items


@overload
def Optional(T: Callable[[str], _T]) -> Callable[[str], _T | None]: ...
@overload
def Optional(T: Callable[[str], _T], default: _U) -> Callable[[str], _T | _U]: ...
def Optional(T: Callable[[str], _T], default: _U | None = None) -> Callable[[str], _T | _U | None]:
    """A value parsed with ``T``, or ``default`` if empty or not configured."""

    def parse_optional(text: str) -> _T | _U | None:
        return T(text) if text else default

    return parse_optional


def Fallback(T1: Callable[[str], _T], T2: Callable[[str], _U]) -> Callable[[str], _T | _U]:
    """A value parsed with ``T1``, or if that fails, with ``T2``.

    This is useful for backwards-compatible configuration changes.
    """

    def parse_either(text: str) -> _T | _U:
        try:
            return T1(text)
        except Exception as first:
            try:
                return T2(text)
            except Exception as second:
                raise ValueError(f"{first}; and as a fallback: {second}") from second

    return parse_either
