"""Utilities for common cryptographic operations.

Message signing proves that a message was made by someone who holds a shared
secret, and that it has not expired::

    message = "Hello, world!"

    secret = secrets.get_versioned("some_signing_key")
    signature = make_signature(secret, message, max_age=datetime.timedelta(days=1))

    try:
        validate_signature(secret, message, signature)
    except SignatureError:
        print("Oh no, it was invalid!")
    else:
        print("Message was valid!")

Signatures are byte-for-byte those of the original Baseplate: URL-safe base64
of a version byte, two padding bytes, a little-endian 32-bit expiration time
and an HMAC-SHA256 of those seven bytes followed by the UTF-8 message.

:class:`MessageSigner` is the original's deprecated, object-style front end
for code that still holds a single unversioned key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import struct
import time
import warnings
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from baseplate.secrets import VersionedSecret

__all__ = [
    "ExpiredSignatureError",
    "IncorrectSignatureError",
    "MessageSigner",
    "SignatureError",
    "SignatureInfo",
    "UnreadableSignatureError",
    "constant_time_compare",
    "make_signature",
    "validate_signature",
]

constant_time_compare = hmac.compare_digest
"""Compare two strings or byte strings without leaking where they differ.

This is :func:`hmac.compare_digest`: ``a`` and ``b`` must both be
:class:`str` (ASCII only) or both support the buffer protocol (e.g.
:class:`bytes`). If they differ in length, or an error occurs, a timing attack
could in theory learn their types and lengths, but not their values.
"""

_VERSION: Final = 1
# version (unsigned byte), two padding bytes, expiration (unsigned 32-bit), little-endian.
_HEADER: Final = struct.Struct("<BxxI")
_DIGEST_SIZE: Final = hashlib.sha256().digest_size


class SignatureError(Exception):
    """Base class for all message signing related errors."""


class UnreadableSignatureError(SignatureError):
    """Raised when the signature is corrupt or wrongly formatted."""


class IncorrectSignatureError(SignatureError):
    """Raised when the signature is readable but does not match the message."""


class ExpiredSignatureError(SignatureError):
    """Raised when the signature is valid but has expired.

    The ``expiration`` attribute is the time (as seconds since the UNIX epoch)
    at which the signature expired.
    """

    def __init__(self, expiration: int) -> None:
        super().__init__(expiration)
        self.expiration = expiration

    def __str__(self) -> str:
        return f"signature expired at {self.expiration}"


class SignatureInfo(NamedTuple):
    """Information about a valid signature."""

    version: int
    """The version of the packed signature format."""

    expiration: int
    """The time, in seconds since the UNIX epoch, at which the signature will expire."""


def _digest(key: bytes, header: bytes, message: bytes) -> bytes:
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(message)
    return mac.digest()


def make_signature(secret: VersionedSecret, message: str, max_age: datetime.timedelta) -> bytes:
    """Return a signature for the given message.

    To ensure that key rotation works automatically, always fetch the secret
    token from the secret store immediately before use and do not cache / save
    the token anywhere. The current version of the secret will be used to
    sign the token.

    :param secret: The secret signing key from the secret store.
    :param message: The message to sign.
    :param max_age: The amount of time in the future the signature will be
        valid for. A negative age makes a signature that has already expired.
    :returns: An encoded signature: 52 ASCII characters, as :class:`bytes`.
    :raises ValueError: if the expiration falls outside the years 1970 to
        2106, which the format cannot hold.
    """
    expiration = int(time.time() + max_age.total_seconds())
    try:
        header = _HEADER.pack(_VERSION, expiration)
    except struct.error:
        raise ValueError(f"expiration {expiration} does not fit the signature format") from None
    digest = _digest(secret.current, header, message.encode("utf-8"))
    return base64.urlsafe_b64encode(header + digest)


def _decode(signature: str | bytes) -> bytes:
    """Decode URL-safe base64 the lenient way the original did.

    Characters outside the alphabet are dropped, and the standard alphabet's
    ``+`` and ``/`` are accepted too; wrong padding is an error.
    """
    if isinstance(signature, str):
        try:
            raw = signature.encode("ascii")
        except UnicodeEncodeError:
            raise UnreadableSignatureError("signature is not ASCII") from None
    elif isinstance(signature, (bytes, bytearray, memoryview)):
        raw = bytes(signature)
    else:
        raise UnreadableSignatureError(f"signature must be str or bytes, not {type(signature)!r}")
    try:
        return base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError):
        raise UnreadableSignatureError("signature is not base64") from None


def validate_signature(
    secret: VersionedSecret, message: str, signature: str | bytes
) -> SignatureInfo:
    """Validate and assert a message's signature is correct.

    If the signature is valid, the function will return normally with a
    :class:`SignatureInfo` with some details about the signature.
    Otherwise, an exception will be raised.

    To ensure that key rotation works automatically, always fetch the secret
    token from the secret store immediately before use and do not cache / save
    the token anywhere. All active versions of the secret will be checked when
    validating the signature.

    Checks run in this order: the signature must be readable, then match the
    message under one of the secret's versions, then not have expired. A
    signature that is both wrong and expired is therefore *incorrect*.

    :param secret: The secret signing key from the secret store.
    :param message: The message payload to validate.
    :param signature: The signature supplied with the message.
    :raises UnreadableSignatureError: The signature is corrupt (anything that
        is not a well-formed version 1 signature, including a ``message`` or
        ``signature`` of the wrong type).
    :raises IncorrectSignatureError: The digest is incorrect.
    :raises ExpiredSignatureError: The signature expired.
    """
    if not isinstance(message, str):
        raise UnreadableSignatureError(f"message must be str, not {type(message)!r}")
    try:
        encoded_message = message.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise UnreadableSignatureError("message cannot be encoded as UTF-8") from None

    packed = _decode(signature)
    header, digest = packed[: _HEADER.size], packed[_HEADER.size :]
    if len(header) != _HEADER.size:
        raise UnreadableSignatureError("signature is too short")
    version, expiration = _HEADER.unpack(header)
    if version != _VERSION:
        raise UnreadableSignatureError(f"unknown signature version {version}")
    if len(digest) != _DIGEST_SIZE:
        raise UnreadableSignatureError("digest has the wrong length")

    # Check every version, without stopping at a match, so that the time taken
    # does not tell which version signed.
    matched = False
    for key in secret.all_versions:
        expected = _digest(key, header, encoded_message)
        matched |= constant_time_compare(expected, digest)
    if not matched:
        raise IncorrectSignatureError

    if time.time() > expiration:
        raise ExpiredSignatureError(expiration)
    return SignatureInfo(version, expiration)


class MessageSigner:
    """Sign messages and validate their signatures with one unversioned key.

    This is for backwards compatibility: it is :func:`make_signature` and
    :func:`validate_signature` with ``secret_key`` standing for every version
    of the secret, so its signatures are interchangeable with theirs. New
    code should use those functions with a versioned secret fetched from the
    secrets store, which lets the key be rotated without rejecting
    signatures in flight.

    :param secret_key: The key to sign and validate with.
    :raises TypeError: if ``secret_key`` is not :class:`bytes`.

    .. deprecated:: 0.31
       Constructing one emits a :class:`DeprecationWarning`, as the original
       did.
    """

    def __init__(self, secret_key: bytes) -> None:
        if not isinstance(secret_key, bytes | bytearray):
            raise TypeError(
                f"secret_key must be bytes, not {type(secret_key).__name__} (encode it first)"
            )
        warnings.warn(
            "MessageSigner is deprecated: use baseplate.crypto.make_signature and "
            "validate_signature with a versioned secret from the secrets store",
            DeprecationWarning,
            stacklevel=2,
        )
        from baseplate.secrets import VersionedSecret

        #: The key, as a :class:`~baseplate.secrets.VersionedSecret` of one version.
        self.secret = VersionedSecret.from_simple_secret(bytes(secret_key))

    def make_signature(self, message: str, max_age: datetime.timedelta) -> bytes:
        """Return a signature for ``message``; see :func:`make_signature`."""
        return make_signature(self.secret, message, max_age)

    def validate_signature(self, message: str, signature: str | bytes) -> SignatureInfo:
        """Check the signature of ``message``; see :func:`validate_signature`.

        :raises SignatureError: (one of its subclasses) if it is not valid.
        """
        return validate_signature(self.secret, message, signature)


def __getattr__(name: str) -> Any:
    # The original imported VersionedSecret here, so ``from baseplate.crypto
    # import VersionedSecret`` worked. It is looked up on first use instead:
    # importing the secrets store brings in the instrumentation framework,
    # which this module does not otherwise need.
    if name == "VersionedSecret":
        from baseplate.secrets import VersionedSecret

        return VersionedSecret
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
