"""Thrift client for RPC to other backend services.

:class:`ThriftContextFactory` puts a proxy with the interface of a
Thrift-generated client on the context object. Each method call on it checks
a connection out of a :class:`~baseplate.thrift_pool.ThriftConnectionPool`
and is a child span of the request, named ``<attribute>.<method>``; the
call carries that child span's trace ids, and the request's edge context, as
THeader headers, so the service called continues the same trace::

    baseplate.add_to_context("example", ThriftContextFactory(pool, ExampleService.Client))

    def handler(context):
        return context.example.do_example_thing()  # span "example.do_example_thing"
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TException
from thrift.transport.TTransport import TTransportException

from baseplate.context import ContextFactory
from baseplate.retry import RetryPolicy
from baseplate.thrift_pool import ThriftConnectionPool
from bridge.propagation import traceparent_for_wide_trace

if TYPE_CHECKING:
    from baseplate.core import Span

__all__ = ["ThriftClientProxy", "ThriftContextFactory"]

#: A single attempt: what the proxy does outside ``retrying()``.
_NO_RETRIES = RetryPolicy.new(attempts=1)


class ThriftContextFactory(ContextFactory):
    """Thrift client pool context factory.

    This factory will attach a proxy object with the same interface as your
    thrift client to an attribute on the context object. When a thrift
    method is called on this proxy object, it will check out a connection
    from the connection pool and execute the RPC, automatically recording
    diagnostic information.

    :param pool: The connection pool.
    :type pool: baseplate.thrift_pool.ThriftConnectionPool
    :param client_cls: The class object of a Thrift-generated client class,
        e.g. ``YourService.Client``.

    The proxy object has a ``retrying`` method which takes the same
    parameters as :meth:`RetryPolicy.new <baseplate.retry.RetryPolicy.new>`
    and acts as a context manager. The context manager returns another proxy
    object where Thrift service method calls will be automatically retried
    with the specified retry policy when transient errors occur::

        with context.my_service.retrying(attempts=3) as svc:
            svc.some_method()
    """

    def __init__(self, pool: ThriftConnectionPool, client_cls: type) -> None:
        self.pool = pool
        self.client_cls = client_cls
        self.proxy_cls = _make_proxy_class(client_cls)

    def make_object_for_context(self, name: str, server_span: Span) -> ThriftClientProxy:
        """Return a proxy whose calls are child spans of ``server_span``."""
        return self.proxy_cls(self.pool, self.client_cls, server_span, name)


def _service_methods(client_cls: type) -> dict[str, Callable[..., Any]]:
    """The service methods of a generated client, from its ``Iface`` bases.

    Generated clients derive from the service's ``Iface`` (and, for a service
    that ``extends`` another, from the base service's client and ``Iface``).
    For a client class without one, the public methods that have a
    ``send_<name>`` counterpart are the service methods.
    """
    methods: dict[str, Callable[..., Any]] = {}
    for cls in reversed(client_cls.__mro__):
        if cls.__name__ == "Iface":
            methods.update(
                (name, value)
                for name, value in vars(cls).items()
                if not name.startswith("_") and inspect.isfunction(value)
            )
    if not methods:
        methods = {
            name: getattr(client_cls, name)
            for name in dir(client_cls)
            if not name.startswith("_")
            and callable(getattr(client_cls, name))
            and callable(getattr(client_cls, "send_" + name, None))
        }
    if not methods:
        raise TypeError(f"{client_cls!r} does not look like a Thrift-generated client class")
    return methods


def _make_proxy_method(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: ThriftClientProxy, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    call.__name__ = name
    call.__qualname__ = f"ThriftClientProxy.{name}"
    call.__doc__ = method.__doc__
    return call


def _make_proxy_class(client_cls: type) -> type[ThriftClientProxy]:
    namespace = {
        name: _make_proxy_method(name, method)
        for name, method in _service_methods(client_cls).items()
        if not hasattr(ThriftClientProxy, name)
    }
    return type(f"{client_cls.__qualname__.replace('.', '')}Proxy", (ThriftClientProxy,), namespace)


class ThriftClientProxy:
    """The object on the context: the service's methods, each call traced.

    Its class is made for each client class and has one method for each
    method of the service. A call:

    * is a child span of the request named ``<attribute>.<method>``, which
      the metrics observer times as ``clients.<attribute>.<method>``;
    * checks a connection out of the pool for the duration of the call;
    * sends, as THeader headers, the child span's ``Trace``, ``Parent`` and
      ``Span`` ids, ``Sampled`` (``1`` or ``0``, if the sampling decision is
      known) and ``Flags`` (if any are set), ``traceparent`` when the trace
      id is wider than Baseplate's 64 bits (a trace an OpenTelemetry caller
      started), and ``Edge-Request``, the request's edge context, if it has
      one;
    * finishes the span as a success when it returns or raises an exception
      declared in the service's IDL, and as a failure for any other error
      (:class:`~thrift.Thrift.TApplicationException`,
      :class:`~thrift.protocol.TProtocol.TProtocolException`,
      :class:`~thrift.transport.TTransport.TTransportException`...).

    Inside :meth:`retrying`, a call that fails with a transport error is
    attempted again, as a new child span, while the policy allows; the last
    error is raised when it gives up.

    .. versionadded:: 0.31
       The reference did not name the proxy's class.
    """

    def __init__(
        self,
        pool: ThriftConnectionPool,
        client_cls: type,
        server_span: Span,
        namespace: str,
        retry_policy: RetryPolicy = _NO_RETRIES,
    ) -> None:
        # Underscored, so that no service method can be shadowed.
        self._pool = pool
        self._client_cls = client_cls
        self._server_span = server_span
        self._namespace = namespace
        self._retry_policy = retry_policy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._namespace!r}>"

    def retrying(
        self,
        attempts: int | None = None,
        budget: float | None = None,
        backoff: float | None = None,
    ) -> AbstractContextManager[ThriftClientProxy]:
        """Return a context manager giving a proxy whose calls are retried.

        Calls made through that proxy are attempted again after transient
        (transport) errors, as the retry policy allows; the parameters are
        those of :meth:`baseplate.retry.RetryPolicy.new`. A time ``budget``
        also caps how long each attempt waits for a connection and a reply.
        """
        policy = RetryPolicy.new(attempts=attempts, budget=budget, backoff=backoff)
        proxy = type(self)(self._pool, self._client_cls, self._server_span, self._namespace, policy)
        # nullcontext, not a generator: generated exceptions are immutable,
        # and @contextmanager cannot re-raise them.
        return nullcontext(proxy)

    def _call(self, method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        span_name = f"{self._namespace}.{method_name}"
        edge_context = getattr(self._server_span.context, "raw_request_context", None)
        last_error: TTransportException | None = None
        for time_remaining in self._retry_policy:
            span = self._server_span.make_child(span_name)
            span.start()
            try:
                with self._pool._connection(time_remaining) as protocol:
                    _write_headers(protocol, span, edge_context)
                    client = self._client_cls(protocol)
                    result = getattr(client, method_name)(*args, **kwargs)
            except TTransportException as exc:
                span.finish(exc_info=sys.exc_info())
                last_error = exc
                continue
            except (TApplicationException, TProtocolException):
                span.finish(exc_info=sys.exc_info())
                raise
            except TException:
                span.finish()  # declared in the IDL: the call itself worked
                raise
            except BaseException:
                span.finish(exc_info=sys.exc_info())
                raise
            span.finish()
            return result
        if last_error is None:  # pragma: no cover - policies make at least one attempt
            raise TTransportException(
                TTransportException.UNKNOWN, f"{span_name}: the retry policy allowed no attempt"
            )
        raise last_error


def _write_headers(protocol: TProtocolBase, span: Span, edge_context: Any) -> None:
    """Put the trace ids of ``span`` and the raw edge context in the THeader headers."""
    set_header = getattr(protocol, "set_header", None)
    if set_header is None:
        return  # not THeader: there is nowhere to put them
    protocol.clear_headers()
    set_header(b"Trace", str(span.trace_id).encode())
    set_header(b"Parent", str(span.parent_id).encode())
    set_header(b"Span", str(span.id).encode())
    if span.sampled is not None:
        set_header(b"Sampled", b"1" if span.sampled else b"0")
    if span.flags:
        set_header(b"Flags", str(span.flags).encode())
    otel_span = span.otel_span
    traceparent = None if otel_span is None else traceparent_for_wide_trace(otel_span)
    if traceparent is not None:
        set_header(b"traceparent", traceparent.encode())
    if edge_context:
        if isinstance(edge_context, str):
            edge_context = edge_context.encode()
        set_header(b"Edge-Request", bytes(edge_context))
