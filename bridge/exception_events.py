"""Exception events whose stack trace is formatted when read, not when recorded.

The SDK's ``Span.record_exception`` formats the whole stack with
:func:`traceback.format_exception` as the exception is recorded, on the
request path; on Python 3.11 that also parses source to draw carets, and it
was about half of what a failed request cost in our benchmark. The text is
only wanted by whoever reads the event's attributes: the export thread for
an exported span, nobody for a span that is never exported.

:func:`record_exception` records the same event, under the same attribute
keys and values, but captures only plain data on the request path (type
names, messages, notes, and each traceback entry's file, line number and
function name) and formats the stack trace from it on the first read of the
event's attributes. Nothing refers to the exception, its traceback or its
frames once it returns, so locals of the failed request are not kept alive
while the span waits in an export queue.

The formatted text reads like ``"".join(traceback.format_exception(exc))``,
with these differences:

* Python 3.11's caret lines (``^^^^`` under the failing expression) are left
  out: they need the instruction positions and a parse of the source.
* Source lines are read from :mod:`linecache` when the text is formatted, so
  a file edited in between shows its new line, and the source of a module
  whose code is not in a file on disk (imported from a zip archive, say)
  shows only if linecache already holds it: the traceback module registers
  such modules' loaders with the frames' globals, which are not kept here.
* An exception group is formatted as an ordinary exception, without the
  boxed tracebacks of the exceptions it groups.
* ``sys.tracebacklimit`` is read when the text is formatted.
* Where ``str()`` of the exception raises, ``exception.message`` is
  ``<exception str() failed>``, as the traceback prints it, where the SDK's
  ``record_exception`` would raise.
"""

from __future__ import annotations

import linecache
import sys
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanLimits
from opentelemetry.sdk.trace import Span as SdkSpan

from bridge import _otel_internals as internals

__all__ = ["ExceptionEvent", "record_exception"]

_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER: Final = "Traceback (most recent call last):\n"
#: As in the traceback module: a frame repeated more often than this is summarized.
_RECURSIVE_CUTOFF: Final = 3
#: ``str(escaped)`` for the SDK's default ``escaped=False`` (the facade passes none).
_ESCAPED: Final = "False"
#: How many attributes the event has, for ``dropped_attributes`` without formatting.
_ATTRIBUTE_COUNT: Final = 4

# What is captured, in plain tuples (cheap to make, and they hold no frames):
# a traceback entry is (filename, line number, function name);
_Entry = tuple[str, int | None, str]
# a SyntaxError's own location is (filename, line number, text, offset, end offset, msg);
_SyntaxDetail = tuple[Any, Any, Any, Any, Any, Any]
# one exception of the chain is (separator printed before it, type name as the
# traceback prints it, message, notes, traceback entries, SyntaxError details).
# The notes are a tuple of strings, a string printed as is where ``__notes__``
# is not a sequence, or None.
_Captured = tuple[
    str | None, str, str, tuple[str, ...] | str | None, list[_Entry], _SyntaxDetail | None
]

#: The SDK's default limits, for a span whose own cannot be read.
_DEFAULT_LIMITS: Final = SpanLimits()


def record_exception(span: trace.Span, exception: BaseException) -> None:
    """Record ``exception`` on ``span`` as ``span.record_exception(exception)`` would.

    On a recording SDK span the event's stack trace is formatted only when
    its attributes are first read (see the module's documentation). Any
    other span that is recording records the exception itself; a span that
    is not recording records nothing.
    """
    if not span.is_recording():
        return
    if not isinstance(span, SdkSpan):
        span.record_exception(exception)
        return
    limits = internals.span_limits(span) or _DEFAULT_LIMITS
    if not internals.add_event(span, ExceptionEvent(exception, limits)):
        span.record_exception(exception)


class ExceptionEvent(Event):
    """An ``exception`` event whose ``exception.stacktrace`` is formatted on first read.

    Exporters see an SDK :class:`~opentelemetry.sdk.trace.Event`: the same
    name, a timestamp taken when the exception was recorded, and attributes
    that are, once read, an immutable ``BoundedAttributes`` with the span's
    event-attribute limits applied, as the SDK's own exception events have.
    """

    #: The attributes once made; set at most once, in the instance's dict.
    _exception_attributes: BoundedAttributes | None = None

    def __init__(self, exception: BaseException, limits: SpanLimits) -> None:
        super().__init__("exception")
        cls = type(exception)
        module, qualname = cls.__module__, cls.__qualname__
        self._exception_type = (
            f"{module}.{qualname}" if module and module != "builtins" else qualname
        )
        self._exception_chain = _capture_chain(exception)
        self._exception_limits = limits

    @property
    def attributes(self) -> BoundedAttributes:
        """The event's four attributes, the stack trace formatted on the first read."""
        made = self._exception_attributes
        if made is None:
            # dict.setdefault is one step under the GIL: a reader racing this
            # one formats too, but both return the value stored first.
            made = vars(self).setdefault("_exception_attributes", self._make_attributes())
        return made

    @property
    def dropped_attributes(self) -> int:
        """How many of the four attributes the span's limit left out (no formatting needed)."""
        limit = self._exception_limits.max_event_attributes
        return 0 if limit is None else max(0, _ATTRIBUTE_COUNT - limit)

    @property
    def stacktrace_formatted(self) -> bool:
        """Whether the stack trace has been formatted yet (on the first read of ``attributes``)."""
        return self._exception_attributes is not None

    def _make_attributes(self) -> BoundedAttributes:
        chain = self._exception_chain
        limits = self._exception_limits
        return BoundedAttributes(
            limits.max_event_attributes,
            {
                "exception.type": self._exception_type,
                "exception.message": chain[0][2],
                "exception.stacktrace": _format(chain),
                "exception.escaped": _ESCAPED,
            },
            immutable=True,
            max_value_len=limits.max_attribute_length,
        )


def _safe_str(value: object, what: str) -> str:
    """``str(value)``, or what the traceback module prints where that raises."""
    try:
        return str(value)
    except Exception:
        return f"<{what} str() failed>"


def _capture_chain(exception: BaseException) -> list[_Captured]:
    """The chain of ``exception`` as the traceback module walks it, outermost first.

    Each exception is followed by its ``__cause__`` or else its
    ``__context__`` (unless ``__suppress_context__``), as
    ``format_exception`` does; an exception already in the chain ends it.
    """
    chain: list[_Captured] = []
    seen = {id(exception)}
    current: BaseException | None = exception
    while current is not None:
        following: BaseException | None = current.__cause__
        separator: str | None = _CAUSE
        if following is None or id(following) in seen:
            following = current.__context__
            separator = _CONTEXT
            if following is None or current.__suppress_context__ or id(following) in seen:
                following = separator = None
        chain.append(_capture_one(current, separator))
        if following is not None:
            seen.add(id(following))
        current = following
    return chain


def _capture_one(exception: BaseException, separator: str | None) -> _Captured:
    """What formatting ``exception`` needs: strings and numbers, no frames."""
    cls = type(exception)
    module, qualname = cls.__module__, cls.__qualname__
    if module in ("__main__", "builtins"):
        shown = qualname
    else:
        shown = f"{module if isinstance(module, str) else '<unknown>'}.{qualname}"
    entries: list[_Entry] = []
    tb = exception.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        entries.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    notes: tuple[str, ...] | str | None = None
    raw_notes = getattr(exception, "__notes__", None)
    if raw_notes is not None:
        if isinstance(raw_notes, Sequence):
            notes = tuple(_safe_str(note, "note") for note in raw_notes)
        else:
            try:
                notes = repr(raw_notes)
            except Exception:
                notes = "<__notes__ repr() failed>"
    syntax: _SyntaxDetail | None = None
    if isinstance(exception, SyntaxError):
        syntax = (
            exception.filename,
            exception.lineno,
            exception.text,
            exception.offset,
            exception.end_offset,
            exception.msg,
        )
    # The chain's first message is also ``exception.message``, which the SDK takes from str().
    return (
        separator,
        shown,
        _safe_str(exception, "exception"),
        notes,
        entries,
        syntax,
    )


def _format(chain: list[_Captured]) -> str:
    """The traceback text of a captured chain, innermost exception first, as Python prints it."""
    for filename in {entry[0] for captured in chain for entry in captured[4]}:
        linecache.checkcache(filename)
    out: list[str] = []
    for separator, shown, message, notes, entries, syntax in reversed(chain):
        if separator is not None:
            out.append(separator)
        shown_entries = _limited(entries)
        if shown_entries:
            out.append(_HEADER)
            _format_entries(shown_entries, out)
        if syntax is None:
            out.append(f"{shown}: {message}\n" if message else f"{shown}\n")
        else:
            _format_syntax_error(shown, syntax, out)
        if isinstance(notes, tuple):
            out.extend(line + "\n" for note in notes for line in note.split("\n"))
        elif notes is not None:
            out.append(notes)
    return "".join(out)


def _limited(entries: list[_Entry]) -> list[_Entry]:
    """The entries ``sys.tracebacklimit`` lets the traceback module print (the outermost)."""
    limit = getattr(sys, "tracebacklimit", None)
    return entries if limit is None else entries[: max(limit, 0)]


def _format_entries(entries: list[_Entry], out: list[str]) -> None:
    """Append each entry's two lines, summarizing recursion as ``StackSummary.format`` does."""
    last: _Entry | None = None
    count = 0
    for entry in entries:
        filename, lineno, name = entry
        if last is None or lineno is None or entry != last:
            _append_repeats(count, out)
            last = entry
            count = 0
        count += 1
        if count > _RECURSIVE_CUTOFF:
            continue
        out.append(f'  File "{filename}", line {lineno}, in {name}\n')
        line = linecache.getline(filename, lineno).strip() if lineno is not None else ""
        if line:
            out.append(f"    {line}\n")
    _append_repeats(count, out)


def _append_repeats(count: int, out: list[str]) -> None:
    if count > _RECURSIVE_CUTOFF:
        count -= _RECURSIVE_CUTOFF
        out.append(f"  [Previous line repeated {count} more time{'s' if count > 1 else ''}]\n")


def _format_syntax_error(shown: str, syntax: _SyntaxDetail, out: list[str]) -> None:
    """A SyntaxError's own location and message, as ``format_exception_only`` prints them."""
    filename, lineno, text, offset, end_offset, msg = syntax
    suffix = ""
    if lineno is not None:
        out.append(f'  File "{filename or "<string>"}", line {lineno}\n')
    elif filename is not None:
        suffix = f" ({filename})"
    if text is not None:
        rtext = text.rstrip("\n")
        ltext = rtext.lstrip(" \n\f")
        spaces = len(rtext) - len(ltext)
        out.append(f"    {ltext}\n")
        if offset is not None:
            end = end_offset if end_offset not in {None, 0} else offset
            if end in (offset, -1):
                end = offset + 1
            column, end_column = offset - 1 - spaces, end - 1 - spaces
            if column >= 0:
                indent = "".join(c if c.isspace() else " " for c in ltext[:column])
                out.append(f"    {indent}{'^' * (end_column - column)}\n")
    out.append(f"{shown}: {msg or '<no detail available>'}{suffix}\n")
