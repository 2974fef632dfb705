"""CSRF tokens for Pyramid that need no storage: signed and scoped to the user.

Use it where authentication happens before the application (an intranet
service behind an authenticating proxy): Pyramid's
``request.authenticated_userid`` names the user, and each token is a
signature of that name with a secret from the secrets store, so any instance
of the service can check a token another one issued, and nothing is stored::

    configurator.set_csrf_storage_policy(
        TokenCSRFStoragePolicy(secrets=secrets, secret_path="secret/myservice/csrf")
    )
    configurator.set_default_csrf_options(require_csrf=True)

A token is ``<version>.<signature>`` with version ``1`` and the signature
made by :func:`baseplate.crypto.make_signature` over ``1.<user id>``, as the
original Baseplate made them, so tokens pass between old and new instances
during a migration. Tokens expire (``max_age``) and cannot be revoked one by
one: render a new one with each form.
"""

from __future__ import annotations

import datetime
from typing import Any

from zope.interface import implementer

from baseplate._extras import missing_extra
from baseplate.crypto import SignatureError, make_signature, validate_signature
from baseplate.secrets import SecretsStore, VersionedSecret

try:
    from pyramid.interfaces import ICSRFStoragePolicy
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("baseplate.integration.pyramid.csrf", "Pyramid", "pyramid") from exc

__all__ = ["TokenCSRFStoragePolicy"]


def _make_csrf_token_payload(version: object, account_id: str) -> tuple[str, str]:
    """The token's version prefix, and the text its signature covers."""
    prefix = str(version)
    return prefix, f"{prefix}.{account_id}"


@implementer(ICSRFStoragePolicy)
class TokenCSRFStoragePolicy:
    """A Pyramid CSRF storage policy whose tokens are signatures of the user's id.

    :param secrets: The secrets store holding the signing secret.
    :param secret_path: The path of the (versioned) secret in the store;
        rotating it keeps the tokens signed with the previous version valid.
    :param param: The request parameter the token is read from.
    :param max_age: How long a token stays valid.
    """

    #: The token format written, the first part of every token.
    VERSION = 1

    def __init__(
        self,
        secrets: SecretsStore,
        secret_path: str,
        param: str = "csrf_token",
        max_age: datetime.timedelta = datetime.timedelta(hours=1),
    ) -> None:
        self._secrets = secrets
        self._secret_path = secret_path
        self._param = param
        self._max_age = max_age

    def _get_secret(self) -> VersionedSecret:
        return self._secrets.get_versioned(self._secret_path)

    def new_csrf_token(self, request: Any) -> str:
        """A new token for the request's authenticated user.

        Get it through :func:`pyramid.csrf.new_csrf_token` for each form you
        render; tokens expire, so do not reuse them.

        :raises ValueError: if the request has no authenticated user.
        """
        user_id = request.authenticated_userid
        if user_id is None:
            raise ValueError(
                "a CSRF token needs an authenticated user: authenticated_userid is None"
            )
        prefix, payload = _make_csrf_token_payload(self.VERSION, user_id)
        signature = make_signature(self._get_secret(), payload, self._max_age)
        return f"{prefix}.{signature.decode('ascii')}"

    def get_csrf_token(self, request: Any) -> str | None:
        """The token the request carries in its ``param``; never a new one."""
        token: str | None = request.params.get(self._param)
        return token

    def check_csrf_token(self, request: Any, supplied_token: Any) -> bool:
        """Whether ``supplied_token`` was made for this request's user and is unexpired."""
        user_id = request.authenticated_userid
        if not isinstance(supplied_token, str) or user_id is None:
            return False
        version, separator, signature = supplied_token.partition(".")
        if not separator:
            return False
        _, payload = _make_csrf_token_payload(version, user_id)
        try:
            validate_signature(self._get_secret(), payload, signature)
        except SignatureError:
            return False
        return True
