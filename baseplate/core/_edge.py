"""The edge request context: who made the original request, as the edge saw it.

An edge service (the first to receive a user's request) builds the context
with :meth:`EdgeRequestContextFactory.new`; every service downstream gets it
from the ``Edge-Request`` header (``X-Edge-Request`` over HTTP) with
:meth:`EdgeRequestContextFactory.from_upstream`, and the client integrations
forward the header on every call.

The header is the Thrift binary serialisation of ``baseplate.thrift``'s
``Request`` struct; the authentication token inside is a JWT signed with
RS256, verified against the public keys in the secrets store.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TTransport import TMemoryBuffer

from baseplate._state import state as baseplate_state
from baseplate.thrift import ttypes as _generated_ttypes

if TYPE_CHECKING:
    from jwt.types import Options  # a TypedDict from PyJWT 2.10 on; only for types

    from baseplate.secrets import SecretsStore

logger = logging.getLogger(__name__)

# The generated Thrift code is untyped.
ttypes: Any = _generated_ttypes

#: Where the public keys that verify authentication tokens live.
AUTHENTICATION_PUBLIC_KEY_SECRET = "secret/authentication/public-key"

_ALGORITHMS = ["RS256"]
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")
_USER_PREFIX = "t2_"
_SERVICE_PREFIX = "service/"


class NoAuthenticationError(Exception):
    """Raised when trying to use an invalid or missing authentication token."""


class AuthenticationToken:
    """Information about the authenticated user.

    :class:`EdgeRequestContext` provides high-level helpers for extracting
    data from authentication tokens. Use those instead of direct access
    through this class.

    A token that is missing or failed verification raises
    :class:`NoAuthenticationError` from every attribute.
    """

    def __init__(self, claims: dict[str, Any] | None) -> None:
        self._claims = claims

    def _claim(self, name: str) -> Any:
        if self._claims is None:
            raise NoAuthenticationError("no valid authentication token")
        return self._claims.get(name)

    @property
    def is_valid(self) -> bool:
        """Whether the token was present and verified.

        .. versionadded:: 0.31
        """
        return self._claims is not None

    @property
    def subject(self) -> str | None:
        """The raw subject that is authenticated."""
        subject = self._claim("sub")
        return subject if isinstance(subject, str) else None

    @property
    def user_roles(self) -> set[str]:
        """The roles granted to the subject, as written in the token."""
        roles = self._claim("roles")
        if not isinstance(roles, list):
            return set()
        return {role for role in roles if isinstance(role, str)}

    @property
    def oauth_client_id(self) -> str | None:
        """The id of the OAuth client the token was issued to, if any."""
        value = self._claim("client_id")
        return value if isinstance(value, str) else None

    @property
    def oauth_client_type(self) -> str | None:
        """The type of that OAuth client, if any."""
        value = self._claim("client_type")
        return value if isinstance(value, str) else None


class ValidatedAuthenticationToken(AuthenticationToken):
    """A token whose signature and expiry were verified.

    :param payload: The token's claims.
    """

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        #: The token's claims, as decoded.
        self.payload = payload


class InvalidAuthenticationToken(AuthenticationToken):
    """Stands for a token that is missing or failed verification: every
    attribute raises :class:`NoAuthenticationError`."""

    def __init__(self) -> None:
        super().__init__(None)


_INVALID_TOKEN = InvalidAuthenticationToken()

#: Every token must say when it expires: one without ``exp`` would be valid
#: for ever. An anonymous user's token has a null subject, which PyJWT 2.10
#: and newer would reject, so ``subject`` checks the type instead.
_DECODE_OPTIONS: Options = {"require": ["exp"], "verify_sub": False}


class AuthenticationTokenValidator:
    """Verifies authentication tokens against the public keys in the secrets store.

    Every version of the ``secret/authentication/public-key`` secret
    (current, previous, next) is tried, so keys can rotate; the first that verifies
    the signature wins. Only RS256 is accepted: ``none`` and HMAC tokens
    (even one keyed with the public key) are invalid. An expired token is
    invalid, and so is a token without an expiry (``exp``).

    Errors of the secrets store itself (the secret is missing, the file
    cannot be read) are raised: they are configuration problems, and
    treating every user as logged out would hide them.

    .. versionadded:: 0.31
    """

    def __init__(self, secrets: SecretsStore) -> None:
        self.secrets = secrets

    def validate(self, token: str | bytes | None) -> AuthenticationToken:
        """Return the verified token, or an invalid one that raises on use."""
        if not token:
            return _INVALID_TOKEN
        keys = self.secrets.get_versioned(AUTHENTICATION_PUBLIC_KEY_SECRET)
        for key in keys.all_versions:
            try:
                claims = jwt.decode(token, key, algorithms=_ALGORITHMS, options=_DECODE_OPTIONS)
            except jwt.InvalidSignatureError:
                continue  # maybe the next version signed it
            except jwt.InvalidKeyError as exc:
                # A version that cannot be loaded as a public key: the others may
                # still verify; the operator hears of it once, not per request.
                message = f"unusable key in {AUTHENTICATION_PUBLIC_KEY_SECRET}: {exc}"
                baseplate_state.edge_key_failures.report(message, message)
                continue
            except jwt.InvalidTokenError as exc:
                logger.debug("invalid authentication token: %s", exc)
                return _INVALID_TOKEN
            return ValidatedAuthenticationToken(claims)
        logger.debug("authentication token signature matches no public key")
        return _INVALID_TOKEN


class User(NamedTuple):
    """Wrapper for the user values in AuthenticationToken and the LoId cookie."""

    authentication_token: AuthenticationToken
    loid: str | None
    """The LoID of the original request, from the header (never the token)."""
    cookie_created_ms: int | None
    """When the LoID cookie was created, epoch milliseconds."""

    @property
    def id(self) -> str:
        """Authenticated account_id for the current User.

        :raises NoAuthenticationError: if there was no authentication token,
            it was invalid, or the subject is not an account.
        """
        subject = self.authentication_token.subject
        if subject is None or not subject.startswith(_USER_PREFIX):
            raise NoAuthenticationError("the authenticated subject is not a user")
        return subject

    @property
    def is_logged_in(self) -> bool:
        """Does the User have a valid, authenticated id?"""
        try:
            self.id  # noqa: B018 - raises when not logged in
        except NoAuthenticationError:
            return False
        return True

    @property
    def roles(self) -> set[str]:
        """Authenticated roles for the current User.

        :raises NoAuthenticationError: if there was no authentication token
            or it was invalid.
        """
        return self.authentication_token.user_roles

    def has_role(self, role: str) -> bool:
        """Does the authenticated user have the specified role?

        The role asked for is lower-cased; the roles in the token are
        compared as written, so give roles lower-case names.

        :raises NoAuthenticationError: if there was no authentication token
            defined for the current context.
        """
        return role.lower() in self.roles

    def event_fields(self) -> dict[str, Any]:
        """Return fields to be added to events."""
        logged_in = self.is_logged_in
        return {
            "user_id": self.id if logged_in else self.loid,
            "logged_in": logged_in,
            "cookie_created_timestamp": self.cookie_created_ms,
        }


class OAuthClient(NamedTuple):
    """Wrapper for the OAuth2 client values in AuthenticationToken."""

    authentication_token: AuthenticationToken

    @property
    def id(self) -> str | None:
        """Authenticated id for the current client, None if the token names none.

        :raises NoAuthenticationError: if there was no authentication token
            defined for the current context.
        """
        return self.authentication_token.oauth_client_id

    def is_type(self, *client_types: str) -> bool:
        """Is the authenticated client type one of the given types?

        When checking the type of the current OAuthClient, check that the
        type "is" one of the allowed types rather than that it "is not" a
        disallowed type::

            if oauth_client.is_type("third_party"):
                ...

        :param client_types: Case-insensitive sequence of client type names.
        :raises NoAuthenticationError: if there was no authentication token
            defined for the current context.
        """
        client_type = self.authentication_token.oauth_client_type
        return client_type in {name.lower() for name in client_types}

    def event_fields(self) -> dict[str, Any]:
        """Return fields to be added to events."""
        try:
            client_id = self.id
        except NoAuthenticationError:
            client_id = None
        return {"oauth_client_id": client_id}


class Session(NamedTuple):
    """The session of the original request."""

    id: str | None


class Service(NamedTuple):
    """The service that authenticated with a service token.

    .. versionadded:: 0.31
       Documented; 0.30 had it undocumented.
    """

    authentication_token: AuthenticationToken

    @property
    def name(self) -> str:
        """The name of the authenticated service.

        :raises NoAuthenticationError: if there was no valid authentication
            token, or its subject is not a service.
        """
        subject = self.authentication_token.subject
        if subject is None or not subject.startswith(_SERVICE_PREFIX):
            raise NoAuthenticationError("the authenticated subject is not a service")
        return subject[len(_SERVICE_PREFIX) :]


class Device(NamedTuple):
    """The device the original request came from.

    .. versionadded:: 0.31
    """

    id: str | None


class OriginService(NamedTuple):
    """The service that first received the original request.

    .. versionadded:: 0.31
    """

    name: str | None


class Geolocation(NamedTuple):
    """Where the original request came from.

    .. versionadded:: 0.31
    """

    country_code: str | None


def _serialize(request: Any) -> bytes:
    buffer = TMemoryBuffer()
    request.write(TBinaryProtocolAccelerated(buffer))
    return bytes(buffer.getvalue())


def _deserialize(header: bytes) -> Any:
    # Lengths inside the payload can never exceed the payload itself; the
    # limits stop a garbage header from asking for huge allocations.
    limit = len(header)
    protocol = TBinaryProtocolAccelerated(
        TMemoryBuffer(header), string_length_limit=limit, container_length_limit=limit
    )
    request = ttypes.Request()
    request.read(protocol)
    return request


class EdgeRequestContext:
    """Contextual information about the initial request to an edge service.

    Construct this using an :class:`EdgeRequestContextFactory`. The header
    is decoded, and the token verified, when first needed.
    """

    def __init__(
        self,
        authn_token_validator: AuthenticationTokenValidator,
        header: bytes | None,
        _request: Any = None,
    ) -> None:
        self._validator = authn_token_validator
        self._header = header
        self._request = _request
        self._token: AuthenticationToken | None = None

    @property
    def header(self) -> bytes | None:
        """The raw ``Edge-Request`` header: what is forwarded downstream.

        .. versionadded:: 0.31
        """
        return self._header

    def attach_context(self, context: Any) -> None:
        """Attach this to the provided context object.

        Sets ``context.request_context`` to this object and
        ``context.raw_request_context`` to the header that the client
        integrations forward downstream.

        :param context: request context to attach this to
        """
        context.request_context = self
        context.raw_request_context = self._header

    def _t_request(self) -> Any:
        if self._request is None:
            request = None
            if self._header:
                try:
                    request = _deserialize(self._header)
                except Exception as exc:  # anything a garbage payload can raise
                    logger.debug("undecodable Edge-Request header: %r", exc)
            self._request = request or ttypes.Request()
        return self._request

    @property
    def authentication_token(self) -> AuthenticationToken:
        """The verified authentication token (invalid if missing or unverifiable)."""
        if self._token is None:
            self._token = self._validator.validate(self._t_request().authentication_token)
        return self._token

    def event_fields(self) -> dict[str, Any]:
        """Return fields to be added to events."""
        fields: dict[str, Any] = {"session_id": self.session.id}
        fields.update(self.user.event_fields())
        fields.update(self.oauth_client.event_fields())
        return fields

    @property
    def user(self) -> User:
        """User object for the current context."""
        loid = self._t_request().loid
        return User(
            authentication_token=self.authentication_token,
            loid=loid.id if loid else None,
            cookie_created_ms=loid.created_ms if loid else None,
        )

    @property
    def oauth_client(self) -> OAuthClient:
        """OAuthClient object for the current context."""
        return OAuthClient(self.authentication_token)

    @property
    def session(self) -> Session:
        """Session object for the current context."""
        session = self._t_request().session
        return Session(id=session.id if session else None)

    @property
    def service(self) -> Service:
        """Service object for the current context."""
        return Service(self.authentication_token)

    @property
    def device(self) -> Device:
        """Device object for the current context.

        .. versionadded:: 0.31
        """
        device = self._t_request().device
        return Device(id=device.id if device else None)

    @property
    def origin_service(self) -> OriginService:
        """OriginService object for the current context.

        .. versionadded:: 0.31
        """
        origin = self._t_request().origin_service
        return OriginService(name=origin.name if origin else None)

    @property
    def geolocation(self) -> Geolocation:
        """Geolocation object for the current context.

        .. versionadded:: 0.31
        """
        geolocation = self._t_request().geolocation
        return Geolocation(country_code=geolocation.country_code if geolocation else None)

    @property
    def request_id(self) -> str | None:
        """The readable id of the original request, if the edge gave one.

        .. versionadded:: 0.31
        """
        request_id = self._t_request().request_id
        return request_id.readable_id if request_id else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} header={len(self._header or b'')} bytes>"


class EdgeRequestContextFactory:
    """Factory for creating EdgeRequestContext objects.

    Every application should set one of these up. Edge services that talk
    directly with clients should use :meth:`new` directly. For internal
    services, pass the object off to Baseplate's framework integration
    (Thrift/Pyramid) for automatic use.

    :param secrets: A configured secrets store.
    """

    def __init__(self, secrets: SecretsStore) -> None:
        self.authn_token_validator = AuthenticationTokenValidator(secrets)

    def new(
        self,
        authentication_token: str | bytes | None = None,
        loid_id: str | None = None,
        loid_created_ms: int | None = None,
        session_id: str | None = None,
        device_id: str | None = None,
        origin_service_name: str | None = None,
        country_code: str | None = None,
        request_id: str | None = None,
    ) -> EdgeRequestContext:
        """Return a new EdgeRequestContext object made from scratch.

        Services at the edge that communicate directly with clients should
        use this to pass on the information they get to downstream services.
        They can then use this information to check authentication, run
        experiments, etc. Create and attach the context early in your
        request flow::

            edge_context = self.edgecontext_factory.new(
                authentication_token=token,
                loid_id=loid.id,
                loid_created_ms=loid.created,
                session_id=session.id,
            )
            edge_context.attach_context(request)

        :param authentication_token: A raw authentication token as returned
            by the authentication service.
        :param loid_id: ID for the current LoID in fullname format
            (``t2_...``).
        :param loid_created_ms: Epoch milliseconds when the current LoID
            cookie was created.
        :param session_id: ID for the current session cookie.
        :param device_id: ID of the device the request came from.
        :param origin_service_name: Name of the service that first received
            the request.
        :param country_code: Two-letter upper-case ISO country code of where
            the request came from.
        :param request_id: A human-readable id of the request.
        :raises ValueError: if ``loid_id`` does not start with ``t2_`` or
            ``country_code`` is not two upper-case letters.

        .. versionchanged:: 0.31
           ``device_id``, ``origin_service_name``, ``country_code`` and
           ``request_id`` are documented.
        """
        if loid_id is not None and not loid_id.startswith(_USER_PREFIX):
            raise ValueError(f"loid_id {loid_id!r} is not in fullname format (t2_...)")
        if country_code is not None and not _COUNTRY_CODE.fullmatch(country_code):
            raise ValueError(f"country_code {country_code!r} is not two upper-case letters")
        if isinstance(authentication_token, bytes):
            authentication_token = authentication_token.decode("utf-8")
        request = ttypes.Request(
            loid=ttypes.Loid(id=loid_id, created_ms=loid_created_ms),
            session=ttypes.Session(id=session_id),
            authentication_token=authentication_token,
            device=ttypes.Device(id=device_id),
            origin_service=ttypes.OriginService(name=origin_service_name),
            geolocation=ttypes.Geolocation(country_code=country_code),
            request_id=ttypes.RequestId(readable_id=request_id),
        )
        return EdgeRequestContext(self.authn_token_validator, _serialize(request), request)

    def from_upstream(self, edge_header: bytes | None) -> EdgeRequestContext:
        """Create and return an EdgeRequestContext from an upstream header.

        This is generally used internally to Baseplate by framework
        integrations that automatically pick up context from inbound
        requests. A missing, empty or undecodable header gives a context
        whose every field is None (logged at debug level); nothing is
        decoded until first used.

        :param edge_header: Raw payload of Edge-Request header from upstream
            service.
        """
        return EdgeRequestContext(self.authn_token_validator, edge_header)
