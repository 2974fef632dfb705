"""The private parts of sentry-sdk Baseplate relies on are still there, and still work."""

from __future__ import annotations

from sentry_sdk.scope import Scope

from bridge import _sentry_internals as internals


def test_every_hook_is_present():
    assert internals.missing_hooks() == [], "sentry-sdk no longer has these hooks"


def test_what_a_scope_was_given_is_read_back():
    scope = Scope()
    assert internals.user_of(scope) is None
    scope.set_user({"id": "t2_x"})
    scope.set_tag("tag", "value")
    scope.set_extra("extra", 1)
    assert internals.user_of(scope) == {"id": "t2_x"}
    assert internals.tags_of(scope) == {"tag": "value"}
    assert internals.extras_of(scope) == {"extra": 1}
    scope.remove_tag("tag")
    assert internals.tags_of(scope) == {}
