"""The edge request context: header bytes and token checks against edge.json."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import types

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from baseplate.core import (
    AuthenticationToken,
    EdgeRequestContext,
    EdgeRequestContextFactory,
    NoAuthenticationError,
)
from baseplate.secrets import SecretNotFoundError, SecretsStore
from baseplate.testing import reset_state
from baseplate.thrift.ttypes import Request
from tests import vectors

EDGE = vectors.load("edge")
KEY_PATH = "secret/authentication/public-key"
FAR_FUTURE = 4102444800  # 2100-01-01


def write_secrets(path, public_keys):
    secret = {"type": "versioned", **public_keys}
    path.write_text(json.dumps({"secrets": {KEY_PATH: secret}}))
    return SecretsStore(str(path))


@pytest.fixture
def factory(tmp_path):
    return EdgeRequestContextFactory(write_secrets(tmp_path / "secrets.json", EDGE["keys"]))


def new_key_pair():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public_pem.decode()


def view(context, expression):
    """Evaluate one accessor expression of the vectors' expected_view."""
    try:
        if expression == "event_fields":
            return context.event_fields()
        if expression == "user.roles":
            return sorted(context.user.roles)
        if expression == "user.has_role(admin)":
            return context.user.has_role("admin")
        if expression == "oauth_client.is_type(third_party)":
            return context.oauth_client.is_type("third_party")
        owner, attribute = expression.split(".")
        return getattr(getattr(context, owner), attribute)
    except NoAuthenticationError:
        return "NoAuthenticationError"


def assert_view(context, expected):
    assert {expression: view(context, expression) for expression in expected} == expected


@pytest.mark.parametrize("case", vectors.cases("edge"))
def test_vector(case, factory):
    if case["kind"] == "new":
        if case.get("expect_error"):
            with pytest.raises(ValueError):
                factory.new(**case["fields"])
            return
        context = factory.new(**case["fields"])
        request = types.SimpleNamespace()
        context.attach_context(request)
        assert request.request_context is context
        assert request.raw_request_context == base64.b64decode(case["expected_header"])
        assert_view(context, case["expected_view"])
        assert_view(factory.from_upstream(request.raw_request_context), case["expected_view"])
    else:
        header = None if case["header"] is None else base64.b64decode(case["header"])
        assert_view(factory.from_upstream(header), case["expected_view"])


def test_vectors_cover_both_kinds():
    assert {case["kind"] for case in EDGE["cases"]} == {"new", "from_upstream"}


# -- the header ----------------------------------------------------------------


def test_new_header_decodes_to_the_given_fields(factory):
    context = factory.new(
        loid_id="t2_abc",
        loid_created_ms=7,
        session_id="sess",
        device_id="dev",
        origin_service_name="origin",
        country_code="DE",
        request_id="req-1",
    )
    upstream = factory.from_upstream(context.header)
    assert upstream.user.loid == "t2_abc"
    assert upstream.user.cookie_created_ms == 7
    assert upstream.session.id == "sess"
    assert upstream.device.id == "dev"
    assert upstream.origin_service.name == "origin"
    assert upstream.geolocation.country_code == "DE"
    assert upstream.request_id == "req-1"


def test_empty_context_has_no_extras(factory):
    context = factory.from_upstream(b"")
    assert context.device.id is None
    assert context.origin_service.name is None
    assert context.geolocation.country_code is None
    assert context.request_id is None


def test_bytes_token_is_written_as_its_text(factory):
    token = "abc.def.ghi"
    assert factory.new(authentication_token=token.encode()).header == (
        factory.new(authentication_token=token).header
    )


@pytest.mark.parametrize("code", ["us", "USA", "U", "US\n", "Ü1"])
def test_bad_country_codes(factory, code):
    with pytest.raises(ValueError, match="country_code"):
        factory.new(country_code=code)


@pytest.mark.parametrize("loid", ["T2_abc", "t3_abc", ""])
def test_bad_loids(factory, loid):
    with pytest.raises(ValueError, match="loid_id"):
        factory.new(loid_id=loid)


@pytest.mark.parametrize("cut", [1, 5, 12, 20])
def test_truncated_header_gives_an_empty_context(factory, cut):
    header = factory.new(loid_id="t2_abc", loid_created_ms=7, session_id="sess").header
    context = factory.from_upstream(header[:cut])
    assert context.user.loid is None
    assert context.session.id is None
    assert not context.user.is_logged_in


def test_huge_declared_length_is_rejected_cheaply(factory):
    # Field 1 a struct whose string claims 2 GB.
    header = b"\x0c\x00\x01\x0b\x00\x01\x7f\xff\xff\xff"
    assert factory.from_upstream(header).user.loid is None


def test_from_upstream_is_lazy(tmp_path):
    # No secrets file at all: nothing is read until a token is asked about.
    factory = EdgeRequestContextFactory(SecretsStore(str(tmp_path / "missing.json")))
    context = factory.from_upstream(b"garbage")
    request = types.SimpleNamespace()
    context.attach_context(request)
    assert request.raw_request_context == b"garbage"
    assert context.session.id is None


def test_from_upstream_none_attaches_none(factory):
    request = types.SimpleNamespace()
    factory.from_upstream(None).attach_context(request)
    assert request.raw_request_context is None


def test_reference_constructor_signature(factory):
    context = EdgeRequestContext(factory.authn_token_validator, factory.new(session_id="x").header)
    assert context.session.id == "x"


def test_header_is_the_thrift_request_struct(factory):
    from thrift.TSerialization import deserialize

    header = factory.new(session_id="s", authentication_token="t").header
    request = deserialize(Request(), header)
    assert request.session.id == "s"
    assert request.authentication_token == "t"


# -- authentication tokens ---------------------------------------------------


def sign(private_key, **claims):
    return jwt.encode(claims, private_key, algorithm="RS256")


def test_previous_and_next_keys_are_accepted(tmp_path):
    current, current_pem = new_key_pair()
    previous, previous_pem = new_key_pair()
    upcoming, upcoming_pem = new_key_pair()
    stranger, _ = new_key_pair()
    store = write_secrets(
        tmp_path / "s.json",
        {"current": current_pem, "previous": previous_pem, "next": upcoming_pem},
    )
    factory = EdgeRequestContextFactory(store)
    for key in (current, previous, upcoming):
        token = sign(key, sub="t2_rotated", exp=FAR_FUTURE)
        assert factory.new(authentication_token=token).user.id == "t2_rotated"
    token = sign(stranger, sub="t2_rotated", exp=FAR_FUTURE)
    assert not factory.new(authentication_token=token).user.is_logged_in


def test_expired_token_under_a_rotated_key_is_invalid(tmp_path):
    _, current_pem = new_key_pair()
    previous, previous_pem = new_key_pair()
    store = write_secrets(tmp_path / "s.json", {"current": current_pem, "previous": previous_pem})
    token = sign(previous, sub="t2_old", exp=int(time.time()) - 60)
    context = EdgeRequestContextFactory(store).new(authentication_token=token)
    with pytest.raises(NoAuthenticationError):
        _ = context.user.id


def test_token_without_an_expiry_is_invalid(tmp_path):
    """A validly signed token with no ``exp`` would never expire: refused."""
    private, public_pem = new_key_pair()
    factory = EdgeRequestContextFactory(write_secrets(tmp_path / "s.json", {"current": public_pem}))
    context = factory.new(authentication_token=sign(private, sub="t2_forever"))
    assert not context.user.is_logged_in
    with pytest.raises(NoAuthenticationError):
        _ = context.user.id
    with_expiry = factory.new(authentication_token=sign(private, sub="t2_forever", exp=FAR_FUTURE))
    assert with_expiry.user.id == "t2_forever"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(alg, claims, signature=b""):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(signature)}"


def test_alg_none_is_invalid(factory):
    token = unsigned_token("none", {"sub": "t2_evil", "exp": FAR_FUTURE})
    context = factory.new(authentication_token=token)
    assert not context.user.is_logged_in
    with pytest.raises(NoAuthenticationError):
        _ = context.user.roles


def test_hs256_keyed_with_the_public_key_is_invalid(factory):
    claims = {"sub": "t2_evil", "exp": FAR_FUTURE}
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    key = EDGE["keys"]["current"].encode()
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    context = factory.new(authentication_token=f"{header}.{payload}.{b64url(signature)}")
    for accessor in (
        lambda: context.user.id,
        lambda: context.user.roles,
        lambda: context.oauth_client.id,
        lambda: context.service.name,
    ):
        with pytest.raises(NoAuthenticationError):
            accessor()
    assert context.event_fields()["logged_in"] is False


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "Ω.Ω.Ω"])
def test_malformed_tokens_are_invalid(factory, token):
    context = factory.new(authentication_token=token)
    with pytest.raises(NoAuthenticationError):
        _ = context.user.id
    assert context.oauth_client.event_fields() == {"oauth_client_id": None}


def test_anonymous_token_with_a_null_subject_is_valid(tmp_path):
    """What the edge issues to logged-out users: roles, and ``"sub": null``."""
    private, public_pem = new_key_pair()
    factory = EdgeRequestContextFactory(write_secrets(tmp_path / "s.json", {"current": public_pem}))
    context = factory.new(
        authentication_token=sign(private, sub=None, exp=FAR_FUTURE, roles=["anonymous"])
    )
    assert context.user.has_role("anonymous")
    assert not context.user.is_logged_in
    with pytest.raises(NoAuthenticationError):
        _ = context.user.id


def test_token_roles_are_compared_as_written(tmp_path):
    private, public_pem = new_key_pair()
    factory = EdgeRequestContextFactory(write_secrets(tmp_path / "s.json", {"current": public_pem}))
    token = sign(
        private,
        sub="t2_x",
        exp=FAR_FUTURE,
        roles=["admin", "Mod"],
        client_id="c",
        client_type="first_party",
    )
    context = factory.new(authentication_token=token)
    assert context.user.roles == {"admin", "Mod"}
    assert context.user.has_role("ADMIN")
    assert not context.user.has_role("mod")
    assert context.oauth_client.is_type("Third_Party", "FIRST_PARTY")
    assert not context.oauth_client.is_type("third_party")
    assert context.authentication_token.subject == "t2_x"
    assert isinstance(context.authentication_token, AuthenticationToken)


def test_missing_public_key_is_a_configuration_error(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"secrets": {}}))
    context = EdgeRequestContextFactory(SecretsStore(str(path))).new(authentication_token="a.b.c")
    with pytest.raises(SecretNotFoundError):
        _ = context.user.id


def test_an_unusable_key_is_logged_once_and_the_others_still_serve(tmp_path, caplog):
    """A key that cannot be loaded is one warning, then debug lines, not one per request."""
    reset_state()
    previous, previous_pem = new_key_pair()
    store = write_secrets(
        tmp_path / "s.json", {"current": "not a PEM key", "previous": previous_pem}
    )
    factory = EdgeRequestContextFactory(store)
    caplog.set_level(logging.DEBUG, logger="baseplate.core._edge")
    for _ in range(3):
        token = sign(previous, sub="t2_kept", exp=FAR_FUTURE)
        assert factory.new(authentication_token=token).user.id == "t2_kept"
    unusable = [r for r in caplog.records if "unusable key" in r.getMessage()]
    assert [r.levelno for r in unusable] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert KEY_PATH in unusable[0].getMessage()
