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

import base64
import datetime
import grp
import pwd
import re
import socket
from collections.abc import Callable, Mapping
from typing import IO, Any, NamedTuple, TypeAlias, TypeVar, overload

__all__ = [
    "Base64",
    "Boolean",
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
    "OneOf",
    "Optional",
    "Percent",
    "String",
    "Timespan",
    "TupleOf",
    "UnixGroup",
    "UnixUser",
    "at_least",
    "parse_config",
]

_T = TypeVar("_T")
_U = TypeVar("_U")


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


class EndpointConfiguration(NamedTuple):
    """A description of a remote endpoint, as returned by :func:`Endpoint`.

    ``family`` and ``address`` are ready for :func:`socket.socket` and
    :meth:`socket.socket.connect`. ``str()`` gives back the configured form.
    """

    family: socket.AddressFamily
    """One of :data:`socket.AF_INET`, :data:`socket.AF_INET6` or :data:`socket.AF_UNIX`."""

    address: tuple[str, int] | str
    """A ``(host, port)`` pair, or the socket path for :data:`socket.AF_UNIX`."""

    def __str__(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        if self.family == socket.AF_INET6:
            return f"[{host}]:{port}"
        return f"{host}:{port}"


class ConfigNamespace(dict[str, Any]):
    """The parsed configuration: a dict whose keys can also be read as attributes.

    ``cfg.nested.once`` is ``cfg["nested"]["once"]``. Keys that clash with
    dict methods (``items``, ``keys``...) must be read with subscripts.

    .. versionadded:: 0.31
       The reference left the type of the result unspecified.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class DictOf:
    """A group of options whose names are not known in advance.

    Every key under the prefix is collected by its first dotted component and
    parsed with ``spec``, which may be a parser, a nested spec dict or another
    :class:`DictOf`. The result maps each name to its parsed value, and is
    empty if no key has the prefix. For example, with ``population.us = 3``
    and ``population.br = 2``, ``{"population": DictOf(Integer)}`` parses to
    ``{"us": 3, "br": 2}``; with ``countries.br.capital = Brasília``,
    ``{"countries": DictOf({"capital": String})}`` gives
    ``cfg.countries["br"].capital == "Brasília"``.

    :param spec: How to parse each member of the group.
    :type spec: a parser, ConfigSpec or DictOf
    """

    def __init__(self, spec: _SpecNode) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"DictOf({self.spec!r})"


_SpecNode: TypeAlias = "Callable[[str], Any] | DictOf | dict[str, _SpecNode]"
ConfigSpec: TypeAlias = "dict[str, _SpecNode]"
"""A spec: names mapped to parsers, :class:`DictOf` groups or nested specs.

.. versionadded:: 0.31
"""


def parse_config(config: Mapping[str, str], spec: ConfigSpec) -> ConfigNamespace:
    """Parse the raw string options in ``config`` against ``spec``.

    A key missing from ``config`` is parsed as the empty string, so
    :func:`String` gives ``""`` and :func:`Optional` gives its default; for
    parsers that reject the empty string the key is reported as missing.

    :param config: The raw stringy configuration, e.g. an INI section.
    :param spec: What the configuration should look like.
    :type spec: ConfigSpec
    :raises ConfigurationError: The configuration violated the spec; the
        error names the full dotted key and the offending value.
    :returns: A structured configuration object.
    """
    return _parse_group(spec, "", config)


def _parse_group(spec: ConfigSpec, prefix: str, config: Mapping[str, str]) -> ConfigNamespace:
    return ConfigNamespace(
        {name: _parse_node(node, prefix + name, config) for name, node in spec.items()}
    )


def _parse_node(node: _SpecNode, key: str, config: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return _parse_group(node, key + ".", config)
    if isinstance(node, DictOf):
        prefix = key + "."
        names = [k.removeprefix(prefix).split(".", 1)[0] for k in config if k.startswith(prefix)]
        return _parse_group({name: node.spec for name in names if name}, prefix, config)
    text = config.get(key, "")
    try:
        return node(text)
    except Exception as exc:
        if key not in config:
            raise ConfigurationError(key, "required but missing") from exc
        raise ConfigurationError(key, f"invalid value {text!r}: {exc}") from exc


def String(text: str) -> str:
    """A raw string."""
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

    ``host:port`` gives :data:`socket.AF_INET` and a ``(host, port)`` pair.
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
    return EndpointConfiguration(family, (host, int(port_text)))


_TIMESPAN_RE = re.compile(
    r"(?P<count>\d+(?:\.\d+)?)\s+(?P<unit>millisecond|second|minute|hour|day)s?", re.IGNORECASE
)


def Timespan(text: str) -> datetime.timedelta:
    """A span of time such as ``1 second``, ``3 days`` or ``1.5 hours``.

    Units are milliseconds, seconds, minutes, hours and days, singular or
    plural. Returns a :class:`datetime.timedelta`.
    """
    match = _TIMESPAN_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a count and a unit, such as '3 seconds'")
    unit = match["unit"].lower() + "s"
    return datetime.timedelta(**{unit: float(match["count"])})


def Base64(text: str) -> bytes:
    """A base64-encoded block of binary data, decoded strictly."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("not valid base64") from None


def File(mode: str = "r") -> Callable[[str], IO[Any]]:
    """A path to a file, parsed into the file opened with :func:`open`.

    The caller owns the returned file and should close it.

    :param mode: The mode in which to open the file.
    """

    def open_file(path: str) -> IO[Any]:
        return open(path, mode)

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
