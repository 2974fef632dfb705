"""Metric names for spans, read from OpenTelemetry's semantic-convention attributes.

An instrumented library names its spans for the operation alone (``GET``,
``SET``), so a span's name does not say which dependency was called: HTTP
calls to every host, and Redis commands too, would share one metric. The
attributes the instrumentations set say more, and this module turns them into
a short, bounded statsd name of the form ``[<system>.]<peer>.<operation>``
(the caller adds its own prefix, such as ``clients.``):

* ``system``: the first of ``db.system.name``, ``db.system``, ``rpc.system``
  and ``messaging.system``. It keeps a Redis and an HTTP server on the same
  host apart. HTTP has no such attribute, and gets no segment for it.
* ``peer``: the first of ``peer.service``, ``server.address``,
  ``net.peer.name``, the host of ``url.full`` or ``http.url`` (the host only,
  never userinfo, port, path or query) and ``rpc.service``. Host names are
  lowercased, since DNS names are case-insensitive. Ports are left out:
  ephemeral ports would make names unbounded, and ``peer.service`` is the way
  to tell two services on one host apart.
* ``operation``: the first of ``http.request.method``, ``http.method``,
  ``db.operation.name``, ``db.operation``, ``rpc.method``,
  ``messaging.operation.name`` and ``messaging.operation``, else the span
  name.

With neither a system nor a peer the name is the span name alone. Each
segment is made safe with :func:`safe_component`. Both the old and the
stable attribute names are read, so the name stays the same whichever an
instrumentation emits (``OTEL_SEMCONV_STABILITY_OPT_IN``). Empty strings and
values that are not scalars count as absent.

This module knows nothing of statsd clients or Baseplate; it only builds names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

#: The longest a segment may be; longer ones are cut.
MAX_COMPONENT_LENGTH = 64

#: The segment that stands for one left empty by :func:`safe_component`.
UNKNOWN = "unknown"

#: Attributes naming the kind of dependency, most specific first.
SYSTEM_ATTRIBUTES = ("db.system.name", "db.system", "rpc.system", "messaging.system")

#: The attribute by which an application names the service it calls.
PEER_SERVICE_ATTRIBUTE = "peer.service"

#: Attributes naming the host called, stable name first.
HOST_ATTRIBUTES = ("server.address", "net.peer.name")

#: Attributes holding a URL whose host names the dependency.
URL_ATTRIBUTES = ("url.full", "http.url")

#: The last resort for the peer: an RPC's logical service.
RPC_SERVICE_ATTRIBUTE = "rpc.service"

#: Attributes naming the operation, stable names before the older ones.
OPERATION_ATTRIBUTES = (
    "http.request.method",
    "http.method",
    "db.operation.name",
    "db.operation",
    "rpc.method",
    "messaging.operation.name",
    "messaging.operation",
)

Attributes = Mapping[str, AttributeValue]

# Underscores are in the class so that a run mixing them with other unsafe
# characters collapses into one.
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9-]+")


def safe_component(text: str) -> str:
    """Make ``text`` one statsd name segment: safe for every statsd and Graphite.

    Each run of characters other than ASCII letters, digits, ``-`` and ``_``
    (dots included: a dot would start a new segment) becomes one ``_``;
    underscores at either end are dropped; the result is cut to
    :data:`MAX_COMPONENT_LENGTH` characters, and is :data:`UNKNOWN` if nothing
    is left.
    """
    safe = _UNSAFE_RUN.sub("_", text).strip("_")
    if len(safe) > MAX_COMPONENT_LENGTH:
        safe = safe[:MAX_COMPONENT_LENGTH].rstrip("_")
    return safe or UNKNOWN


def url_host(url: str) -> str | None:
    """The host of ``url``, lowercased; None if it has none or does not parse.

    Userinfo, port, path, query and fragment are dropped, and so are the
    brackets around an IPv6 address: the host is all a metric name may take
    from a URL, since paths and queries are unbounded.
    """
    try:
        return urlsplit(url).hostname or None
    except ValueError:  # an unclosed IPv6 bracket, say
        return None


def system(attributes: Attributes) -> str | None:
    """The kind of dependency (``redis``, ``grpc``, ``kafka``), if an attribute names it."""
    return _first_text(attributes, SYSTEM_ATTRIBUTES)


def peer(attributes: Attributes) -> str | None:
    """Which dependency was called: a service name, or a host without its port."""
    service = _first_text(attributes, (PEER_SERVICE_ATTRIBUTE,))
    if service is not None:
        return service
    host = _first_text(attributes, HOST_ATTRIBUTES)
    if host is None:
        url = _first_text(attributes, URL_ATTRIBUTES)
        host = url_host(url) if url is not None else None
    if host is not None:
        return host.lower()
    return _first_text(attributes, (RPC_SERVICE_ATTRIBUTE,))


def operation(attributes: Attributes, span_name: str) -> str:
    """What was asked of the dependency: a method or command, else the span name."""
    return _first_text(attributes, OPERATION_ATTRIBUTES) or span_name


def dependency_name(attributes: Attributes | None) -> str | None:
    """``<system>.<peer>``, or whichever of the two is known, made safe; None if neither is."""
    if not attributes:
        return None
    parts = [part for part in (system(attributes), peer(attributes)) if part is not None]
    if not parts:
        return None
    return ".".join(safe_component(part) for part in parts)


def client_metric_name(attributes: Attributes | None, span_name: str) -> str:
    """The metric name of a call to a dependency, without any prefix.

    ``<dependency>.<operation>`` (see :func:`dependency_name`), or the safe
    span name alone when the attributes name no dependency.
    """
    found = attributes or {}
    dependency = dependency_name(found)
    if dependency is None:
        return safe_component(span_name)
    return f"{dependency}.{safe_component(operation(found, span_name))}"


def _first_text(attributes: Attributes, keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` whose value is a non-empty scalar, as text."""
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str):
            if value:
                return value
        elif isinstance(value, (bool, int, float)):
            return str(value)
    return None
