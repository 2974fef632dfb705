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
    NoAuthenticationError,
    OAuthClient,
    OriginService,
    Service,
    Session,
    User,
)
from baseplate.core._observers import BaseplateObserver, ServerSpanObserver, SpanObserver
from baseplate.core._spans import LocalSpan, RecordedSpanError, ServerSpan, Span
from baseplate.core._trace_info import TraceInfo

__all__ = [
    "AuthenticationToken",
    "AuthenticationTokenValidator",
    "Baseplate",
    "BaseplateObserver",
    "Device",
    "EdgeRequestContext",
    "EdgeRequestContextFactory",
    "Geolocation",
    "LocalSpan",
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
]
