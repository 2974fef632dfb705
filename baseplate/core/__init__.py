"""The instrumentation framework: Baseplate, trace information, spans and observers.

Every span here is an OpenTelemetry span underneath; see :mod:`bridge`.
"""

from baseplate.core._baseplate import Baseplate
from baseplate.core._edge import (
    AuthenticationToken,
    AuthenticationTokenValidator,
    Device,
    EdgeRequestContext,
    EdgeRequestContextFactory,
    Geolocation,
    InvalidAuthenticationToken,
    NoAuthenticationError,
    OAuthClient,
    OriginService,
    Service,
    Session,
    User,
    ValidatedAuthenticationToken,
)
from baseplate.core._native_roots import NativeRequestContext
from baseplate.core._observers import BaseplateObserver, ExcInfo, ServerSpanObserver, SpanObserver
from baseplate.core._spans import (
    LocalSpan,
    NativeServerSpan,
    RecordedSpanError,
    ServerSpan,
    Span,
)
from baseplate.core._trace_info import TraceInfo
from baseplate.core._wrapped_context import WrappedRequestContext

__all__ = [
    "AuthenticationToken",
    "AuthenticationTokenValidator",
    "Baseplate",
    "BaseplateObserver",
    "Device",
    "EdgeRequestContext",
    "EdgeRequestContextFactory",
    "ExcInfo",
    "Geolocation",
    "InvalidAuthenticationToken",
    "LocalSpan",
    "NativeRequestContext",
    "NativeServerSpan",
    "NoAuthenticationError",
    "OAuthClient",
    "OriginService",
    "RecordedSpanError",
    "ServerSpan",
    "ServerSpanObserver",
    "Service",
    "Session",
    "Span",
    "SpanObserver",
    "TraceInfo",
    "User",
    "ValidatedAuthenticationToken",
    "WrappedRequestContext",
]
