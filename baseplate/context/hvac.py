"""Integration with HVAC, a Vault Python client, for advanced Vault features.

See `hvac's documentation <https://hvac.readthedocs.io/>`_ for the methods
available from its client.

.. note::

    The :class:`~baseplate.secrets.SecretsStore` handles the most common use
    of Vault in a Baseplate application: secure retrieval of secret tokens.
    This client is only necessary when taking advantage of more advanced
    features of Vault such as the Transit backend or Cubbyholes. If these
    don't sound familiar, check out the secrets store before digging in here.

The client on the context object authenticates with the Vault URL and token
that the secrets fetcher wrote into the secrets file, and traces every call
to Vault as a child span of the request, named after the attribute and the
method called: ``vault.read``, ``vault.secrets.transit.encrypt_data``.
"""

from __future__ import annotations

import datetime
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests

from baseplate import config
from baseplate._extras import missing_extra
from baseplate.context import ContextFactory

try:
    import hvac
    from hvac.api.vault_api_base import VaultApiBase
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.context.hvac", "hvac", "vault") from exc

if TYPE_CHECKING:
    from baseplate.core import Span
    from baseplate.secrets import SecretsStore

__all__ = ["HvacContextFactory", "InstrumentedHvacClient", "hvac_factory_from_config"]

#: How long calls to Vault may take when ``vault.timeout`` is not set.
DEFAULT_TIMEOUT = datetime.timedelta(seconds=1)


def hvac_factory_from_config(
    app_config: Mapping[str, str], secrets_store: SecretsStore, prefix: str = "vault."
) -> HvacContextFactory:
    """Make an HVAC client factory from a configuration dictionary.

    The keys useful to :func:`hvac_factory_from_config` should be prefixed,
    e.g. ``vault.timeout``. The ``prefix`` argument specifies the prefix used
    to filter keys.

    Supported keys:

    ``timeout``
        How long to wait for calls to Vault, e.g. ``200 milliseconds``;
        1 second if not set.

    :param app_config: The raw application configuration.
    :param secrets_store: A configured secrets store from which we can get a
        Vault authentication token.
    :param prefix: The prefix for configuration keys.
    """
    cfg = config.parse_under_prefix(
        app_config,
        prefix,
        {"timeout": config.Optional(config.Timespan, default=DEFAULT_TIMEOUT)},
    )
    return HvacContextFactory(secrets_store, cfg.timeout)


class HvacContextFactory(ContextFactory):
    """HVAC client context factory.

    This factory will attach a proxy object which acts like an
    :class:`hvac.Client` to an attribute on the context object. All methods
    that talk to Vault will be automatically instrumented for tracing and
    diagnostic metrics.

    The clients of all requests share one HTTP connection pool, the
    factory's ``session``. Each request's client reads the Vault URL and token from
    the secrets store when it is first used, so a token the fetcher renewed
    or replaced is picked up by the next request.

    :param secrets_store: Configured secrets store from which we can get a
        Vault authentication token.
    :param timeout: How long to wait for calls to Vault (seconds may be given
        as a number).
    """

    def __init__(self, secrets_store: SecretsStore, timeout: datetime.timedelta | float) -> None:
        self.secrets_store = secrets_store
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        self.timeout = float(timeout)
        #: The :class:`requests.Session` shared by every request's client.
        self.session = requests.Session()

    def make_client(self) -> Any:
        """Return a plain, uninstrumented :class:`hvac.Client` for the current token."""
        return hvac.Client(
            url=self.secrets_store.get_vault_url(),
            token=self.secrets_store.get_vault_token(),
            timeout=self.timeout,
            session=self.session,
        )

    def make_object_for_context(self, name: str, server_span: Span) -> InstrumentedHvacClient:
        """Return a client for one request, tracing its calls under ``server_span``."""
        return InstrumentedHvacClient(self.make_client, server_span, name)


def _instrument(value: Any, server_span: Span, span_name: str) -> Any:
    if isinstance(value, VaultApiBase):
        return _InstrumentedApi(value, server_span, span_name)
    if inspect.ismethod(value) or inspect.isfunction(value):
        return _traced(value, server_span, span_name)
    return value


def _path_argument(method: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
    try:
        bound = inspect.signature(method).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    return bound.arguments.get("path")


def _traced(method: Callable[..., Any], server_span: Span, span_name: str) -> Any:
    def traced_call(*args: Any, **kwargs: Any) -> Any:
        with server_span.make_child(span_name) as span:
            path = _path_argument(method, args, kwargs)
            if isinstance(path, str):
                span.set_tag("vault.path", path)
            return method(*args, **kwargs)

    traced_call.__name__ = getattr(method, "__name__", "traced_call")
    traced_call.__doc__ = getattr(method, "__doc__", None)
    traced_call.__wrapped__ = method  # type: ignore[attr-defined]
    return traced_call


class _InstrumentedApi:
    """A traced view of one of hvac's API groups (``client.secrets.transit`` ...)."""

    def __init__(self, api: Any, server_span: Span, span_name: str) -> None:
        self._api = api
        self._server_span = server_span
        self._span_name = span_name

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._api, name)
        if name.startswith("_"):
            return value
        return _instrument(value, self._server_span, f"{self._span_name}.{name}")

    def __dir__(self) -> list[str]:
        return dir(self._api)

    def __repr__(self) -> str:
        return f"<instrumented {self._api!r} as {self._span_name!r}>"


class InstrumentedHvacClient:
    """A per-request proxy that acts like an :class:`hvac.Client`.

    Each method call, including those on API groups such as
    ``client.secrets.transit`` or ``client.auth.token``, is a child span of
    the request named ``<name>.<attribute path>`` (``vault.read``,
    ``vault.auth.token.lookup_self``); a ``path`` argument is recorded as the
    ``vault.path`` tag, and an exception finishes the span with the error.
    Other attributes (``url``, ``token``, ``adapter``) are the client's own,
    and setting an attribute sets it on the client.

    The underlying client is made on first use, so a request that never
    talks to Vault never reads its token.

    .. versionadded:: 0.31
       The reference did not name the proxy's class.
    """

    def __init__(self, make_client: Callable[[], Any], server_span: Span, name: str) -> None:
        object.__setattr__(self, "_make_client", make_client)
        object.__setattr__(self, "_server_span", server_span)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_client", None)
        object.__setattr__(self, "_lock", threading.Lock())

    def _get_client(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._make_client()
                    object.__setattr__(self, "_client", client)
        return client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._get_client(), name)
        if name.startswith("_"):
            return value
        return _instrument(value, self._server_span, f"{self._name}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get_client(), name, value)

    def __dir__(self) -> list[str]:
        return dir(self._get_client())

    def __repr__(self) -> str:
        return f"<InstrumentedHvacClient {self._name!r}>"
