"""baseplate.crypto: the reference vectors, round trips and fuzzing."""

from __future__ import annotations

import base64
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baseplate import crypto
from baseplate.crypto import (
    ExpiredSignatureError,
    IncorrectSignatureError,
    SignatureError,
    SignatureInfo,
    UnreadableSignatureError,
    constant_time_compare,
    make_signature,
    validate_signature,
)
from baseplate.secrets import VersionedSecret
from tests import vectors

SECRET = VersionedSecret.from_simple_secret(b"hunter2")
ONE_DAY = datetime.timedelta(days=1)


def secret_from_case(case) -> VersionedSecret:
    def decode(value):
        return None if value is None else base64.b64decode(value)

    versions = case["secret"]
    return VersionedSecret(
        previous=decode(versions["previous"]),
        current=decode(versions["current"]),
        next=decode(versions["next"]),
    )


@pytest.mark.parametrize("case", vectors.cases("crypto"))
def test_vector(case, clock):
    clock.now = case["now"]
    secret = secret_from_case(case)
    if case["kind"] == "make":
        max_age = datetime.timedelta(seconds=case["max_age_seconds"])
        signature = make_signature(secret, case["message"], max_age)
        assert signature == case["expected_signature"].encode("ascii")
        return

    assert case["kind"] == "validate"
    expected = case["expected"]
    if expected["ok"]:
        info = validate_signature(secret, case["message"], case["signature"])
        assert info == SignatureInfo(version=expected["version"], expiration=expected["expiration"])
        # Bytes are accepted as well as str.
        assert validate_signature(secret, case["message"], case["signature"].encode()) == info
    else:
        error = getattr(crypto, expected["error"])
        with pytest.raises(error) as raised:
            validate_signature(secret, case["message"], case["signature"])
        if "expiration" in expected:
            assert raised.value.expiration == expected["expiration"]


def test_round_trip(clock):
    signature = make_signature(SECRET, "Hello, world!", ONE_DAY)
    assert isinstance(signature, bytes)
    assert len(signature) == 52
    info = validate_signature(SECRET, "Hello, world!", signature)
    assert info.version == 1
    assert info.expiration == 1500000000 + 86400
    assert info.expiration == info[1]  # still a tuple, as in the original


def test_expired_signature_carries_its_expiration(clock):
    signature = make_signature(SECRET, "msg", datetime.timedelta(seconds=10))
    clock.now += 11
    with pytest.raises(ExpiredSignatureError) as raised:
        validate_signature(SECRET, "msg", signature)
    assert raised.value.expiration == 1500000010
    assert "1500000010" in str(raised.value)


def test_rotation_signatures_from_each_version_validate(clock):
    old, new, upcoming = b"old-key", b"new-key", b"next-key"
    rotated = VersionedSecret(previous=old, current=new, next=upcoming)
    for key in (old, new, upcoming):
        signature = make_signature(VersionedSecret.from_simple_secret(key), "m", ONE_DAY)
        validate_signature(rotated, "m", signature)
    stranger = make_signature(VersionedSecret.from_simple_secret(b"other"), "m", ONE_DAY)
    with pytest.raises(IncorrectSignatureError):
        validate_signature(rotated, "m", stranger)


def test_signs_with_the_current_version(clock):
    rotated = VersionedSecret(previous=b"old", current=b"new", next=b"upcoming")
    signature = make_signature(rotated, "m", ONE_DAY)
    validate_signature(VersionedSecret.from_simple_secret(b"new"), "m", signature)
    with pytest.raises(IncorrectSignatureError):
        validate_signature(VersionedSecret.from_simple_secret(b"old"), "m", signature)


@pytest.mark.parametrize("seconds", [-1_500_000_001, 2**32])
def test_expiration_outside_the_format_is_a_value_error(clock, seconds):
    with pytest.raises(ValueError, match="does not fit"):
        make_signature(SECRET, "m", datetime.timedelta(seconds=seconds))


@pytest.mark.parametrize(
    "signature",
    [None, 12, 1.5, ["AQAA"], "\udcff", "AQAA\u00e9"],
    ids=["none", "int", "float", "list", "lone-surrogate", "non-ascii"],
)
def test_signatures_of_the_wrong_type_or_charset_are_unreadable(clock, signature):
    with pytest.raises(UnreadableSignatureError):
        validate_signature(SECRET, "m", signature)


@pytest.mark.parametrize("message", [None, b"bytes", 5, "\ud800"])
def test_messages_that_cannot_be_signed_are_unreadable(clock, message):
    signature = make_signature(SECRET, "m", ONE_DAY)
    with pytest.raises(UnreadableSignatureError):
        validate_signature(SECRET, message, signature)


def test_short_and_long_forms_are_unreadable(clock):
    good = base64.urlsafe_b64decode(make_signature(SECRET, "m", ONE_DAY))
    for packed in (good[:6], good[:7], good[:-1], good + b"\x00"):
        with pytest.raises(UnreadableSignatureError):
            validate_signature(SECRET, "m", base64.urlsafe_b64encode(packed))


def test_errors_share_a_base():
    for error in (UnreadableSignatureError, IncorrectSignatureError, ExpiredSignatureError):
        assert issubclass(error, SignatureError)


def test_constant_time_compare():
    assert constant_time_compare(b"abc", b"abc")
    assert not constant_time_compare(b"abc", b"abd")
    assert not constant_time_compare(b"abc", b"ab")
    assert constant_time_compare("abc", "abc")


@settings(max_examples=200, deadline=None)
@given(
    message=st.text(),
    signature=st.one_of(
        st.text(),
        st.binary(),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n"),
        st.binary(min_size=0, max_size=60).map(base64.urlsafe_b64encode),
        st.binary(min_size=32, max_size=32).map(
            lambda digest: base64.urlsafe_b64encode(b"\x01\x00\x00\xff\xff\xff\xff" + digest)
        ),
    ),
)
def test_validate_only_raises_signature_errors(message, signature):
    try:
        info = validate_signature(SECRET, message, signature)
    except SignatureError:
        return
    # A random signature cannot be right, barring an HMAC-SHA256 forgery.
    pytest.fail(f"validated a random signature: {info}")


@settings(max_examples=200, deadline=None)
@given(
    message=st.text(st.characters(blacklist_categories=("Cs",))),
    key=st.binary(),
    seconds=st.integers(min_value=60, max_value=10**6),
)
def test_any_message_round_trips(message, key, seconds):
    secret = VersionedSecret.from_simple_secret(key)
    signature = make_signature(secret, message, datetime.timedelta(seconds=seconds))
    assert validate_signature(secret, message, signature).version == 1


# -- MessageSigner: the original's deprecated front end ------------------------------


def signer(key: bytes = b"hunter2") -> crypto.MessageSigner:
    with pytest.warns(DeprecationWarning):
        return crypto.MessageSigner(key)


@pytest.mark.parametrize(
    "case",
    [
        case
        for case in vectors.cases("crypto")
        if case.values[0]["kind"] == "make"
        and case.values[0]["secret"]["previous"] is None
        and case.values[0]["secret"]["next"] is None
    ],
)
def test_message_signer_makes_the_reference_signatures(case, clock):
    clock.now = case["now"]
    key = base64.b64decode(case["secret"]["current"])
    max_age = datetime.timedelta(seconds=case["max_age_seconds"])
    signature = signer(key).make_signature(case["message"], max_age)
    assert signature == case["expected_signature"].encode("ascii")


def test_message_signer_round_trips_and_matches_the_functions(clock):
    message_signer = signer()
    signature = message_signer.make_signature("Hello!", datetime.timedelta(seconds=30))
    assert signature == make_signature(SECRET, "Hello!", datetime.timedelta(seconds=30))
    info = message_signer.validate_signature("Hello!", signature)
    assert info == SignatureInfo(version=1, expiration=1500000030)
    assert validate_signature(SECRET, "Hello!", signature) == info
    assert message_signer.secret == SECRET


def test_message_signer_raises_the_signature_errors(clock):
    message_signer = signer()
    signature = message_signer.make_signature("m", datetime.timedelta(seconds=30))
    with pytest.raises(UnreadableSignatureError):
        message_signer.validate_signature("m", signature[2:])
    with pytest.raises(IncorrectSignatureError):
        message_signer.validate_signature("other", signature)
    with pytest.raises(IncorrectSignatureError):
        signer(b"another key").validate_signature("m", signature)
    clock.now += 31
    with pytest.raises(ExpiredSignatureError) as raised:
        message_signer.validate_signature("m", signature)
    assert raised.value.expiration == 1500000030


def test_message_signer_warns_at_the_callers_line():
    with pytest.warns(DeprecationWarning, match="make_signature") as record:
        crypto.MessageSigner(b"key")
    assert record[0].filename == __file__


def test_message_signer_accepts_a_bytearray(clock):
    signature = signer(bytearray(b"hunter2")).make_signature("m", ONE_DAY)
    validate_signature(SECRET, "m", signature)


def test_message_signer_refuses_a_text_key():
    with pytest.raises(TypeError, match="secret_key must be bytes, not str"):
        crypto.MessageSigner("hunter2")  # type: ignore[arg-type]


def test_versioned_secret_is_importable_from_crypto_as_in_the_original():
    from baseplate.crypto import VersionedSecret as FromCrypto

    assert FromCrypto is VersionedSecret
    assert crypto.VersionedSecret is VersionedSecret
    with pytest.raises(AttributeError, match="no_such_name"):
        crypto.no_such_name  # noqa: B018
