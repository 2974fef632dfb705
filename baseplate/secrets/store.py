"""The in-application side of the secrets file written by the secrets fetcher.

The fetcher writes one JSON object; the store reads what it needs from it::

    {
      "secrets": {
        "secret/myservice/some-key": {"type": "versioned", "current": "...", "encoding": "base64"},
        "secret/myservice/token": {"type": "simple", "value": "..."},
        "secret/myservice/db": {"type": "credential", "username": "...", "password": "..."}
      },
      "vault": {"url": "https://vault.example.com:8200/", "token": "..."}
    }

No secret value is ever logged or shown by ``repr()``, and error messages name
the secret's path but never quote its contents.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple

from baseplate import config
from baseplate.context import ContextFactory
from baseplate.file_watcher import FileWatcher, WatchedFileNotAvailableError

if TYPE_CHECKING:
    from baseplate.core import Span

DEFAULT_PATH: Final = "/var/local/secrets.json"
"""Where the secrets fetcher writes its file unless told otherwise."""

ISO_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
"""A :meth:`~datetime.datetime.strftime` format for UTC timestamps with microseconds.

The original module exported it; nothing in the secrets file depends on it.
"""

_REDACTED: Final = "<redacted>"


class SecretsError(Exception):
    """Base class for the errors of the secrets store.

    .. versionadded:: 0.31
    """


class CorruptSecretError(SecretsError):
    """Raised when the requested secret does not match the expected format.

    :param path: The path of the secret (or ``"vault"`` for the Vault section).
    :param message: What is wrong with it. Never contains the secret's value.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SecretNotFoundError(SecretsError, KeyError):
    """Raised when the requested secret is not in the local vault.

    It is also a :exc:`KeyError`, which is what the original raised when the
    file had no Vault section.

    :param name: The path of the missing secret, or ``"vault.url"`` or
        ``"vault.token"``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"secret not found: {self.name}"


class SecretsNotAvailableError(SecretsError):
    """Raised when the secrets store was not accessible.

    :param inner: The error that made it so, usually a
        :exc:`~baseplate.file_watcher.WatchedFileNotAvailableError` for a
        missing or unparsable file.
    """

    def __init__(self, inner: BaseException | str) -> None:
        super().__init__(inner)
        self.inner = inner

    def __str__(self) -> str:
        return f"secrets are not available: {self.inner}"


class VersionedSecret(NamedTuple):
    """A versioned secret.

    Versioned secrets allow for seamless rotation of keys. When using the
    secret to generate tokens (e.g. signing a message) always use the
    :attr:`current` value. When validating tokens, check against all the
    versions in :attr:`all_versions`. This will allow keys to rotate smoothly
    even if not done instantly across all users of the secret.

    ``repr()`` shows which versions are present, never their values.
    """

    previous: bytes | None
    """The version before :attr:`current`, accepted while the rotation spreads."""

    current: bytes
    """The active version, used to make new tokens and signatures."""

    next: bytes | None
    """The version that will become current, accepted ahead of its time."""

    @property
    def all_versions(self) -> Iterator[bytes]:
        """Return an iterator over the available versions of this secret.

        The current version comes first, then the previous, then the next;
        absent versions are skipped.
        """
        yield self.current
        if self.previous is not None:
            yield self.previous
        if self.next is not None:
            yield self.next

    @classmethod
    def from_simple_secret(cls, value: bytes) -> VersionedSecret:
        """Make a fake versioned secret from a single value.

        This is a backwards compatibility shim for use with APIs that take
        versioned secrets. Try to use proper versioned secrets fetched from
        the secrets store instead.
        """
        return cls(previous=None, current=value, next=None)

    def __repr__(self) -> str:
        def show(value: bytes | None) -> str:
            return "None" if value is None else _REDACTED

        return (
            f"VersionedSecret(previous={show(self.previous)}, "
            f"current={show(self.current)}, next={show(self.next)})"
        )


class CredentialSecret(NamedTuple):
    """A username and password, stored together as a secret of type ``credential``.

    ``repr()`` shows neither.

    .. versionadded:: 0.31
       Present in the original's code, though not in its reference.
    """

    username: str
    """The user name."""

    password: str
    """The password."""

    def __repr__(self) -> str:
        return f"CredentialSecret(username={_REDACTED}, password={_REDACTED})"


class _RawSecret(dict[str, Any]):
    """A secret's raw attributes: a plain dict whose ``repr()`` hides the values."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{key!r}: {_REDACTED}" for key in self) + "}"


def _parse(f: IO[str]) -> dict[str, Any]:
    """Parse the secrets file, checking its outline (the secrets themselves are
    checked when they are asked for, so that one bad secret spoils only itself)."""
    try:
        data = json.load(f)
    except json.JSONDecodeError as exc:
        # The position only: the exception's ``doc`` holds the whole file.
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    for section in ("secrets", "vault"):
        if section in data and not isinstance(data[section], dict):
            raise ValueError(f"{section!r} is not a JSON object")
    return data


def _describe_type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _decode(path: str, value: object, encoding: object) -> bytes:
    """Decode one value from how it is stored at rest."""
    if not isinstance(value, str):
        raise CorruptSecretError(path, f"value is {_describe_type(value)}, not a string")
    if encoding == "identity":
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise CorruptSecretError(path, "value cannot be encoded as UTF-8") from None
    if encoding == "base64":
        try:
            return base64.b64decode(value.encode("ascii"))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise CorruptSecretError(path, "value is not valid base64") from None
    shown = repr(encoding) if isinstance(encoding, str) else _describe_type(encoding)
    raise CorruptSecretError(path, f"unknown encoding: {shown}")


def _require_type(path: str, secret: Mapping[str, Any], expected: str) -> None:
    if secret.get("type") != expected:
        raise CorruptSecretError(path, f"secret does not have type={expected}")


class SecretsStore(ContextFactory):
    """Access to secret tokens with automatic refresh when changed.

    This local vault allows access to the secrets cached on disk by the
    fetcher daemon. It will automatically reload the cache when it is
    changed. Do not cache or store the values returned by this class's
    methods but rather get them from this class each time you need them. The
    secrets are served from memory so there's little performance impact to
    doing so and you will be sure to always have the current version in the
    face of key rotation etc.

    :param path: The path to the secrets file.
    :param timeout: How many seconds to wait for the file to appear (see
        :class:`~baseplate.file_watcher.FileWatcher`); by default, do not wait.

    Every accessor raises :exc:`SecretsNotAvailableError` if the file has
    never been parsed successfully (it is missing, or not valid). Once it
    has, a later version that cannot be parsed, or the removal of the file,
    is ignored with a warning in the log and the secrets already loaded keep
    being served, as in the original: a fetcher's mistake must not take the
    service down.
    """

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self._filewatcher = FileWatcher(path, _parse, timeout=timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._filewatcher.path!r})"

    def _get_data(self) -> dict[str, Any]:
        # Once the file has been loaded, the watcher keeps serving that data
        # through bad versions and removals, so this raises only before then.
        try:
            return self._filewatcher.get_data()
        except WatchedFileNotAvailableError as exc:
            raise SecretsNotAvailableError(exc) from exc

    def get_raw(self, path: str) -> dict[str, Any]:
        """Return a dictionary of key/value pairs for the given secret path.

        This is the raw representation of the secret in the underlying store.
        The dictionary is a copy (changing it changes nothing in the store),
        and its ``repr()`` hides the values.

        :raises SecretNotFoundError: if there is no secret at ``path``.
        :raises CorruptSecretError: if the secret is not a JSON object.
        """
        return _RawSecret(copy.deepcopy(self._get_secret(path)))

    def _get_secret(self, path: str) -> dict[str, Any]:
        secrets = self._get_data().get("secrets", {})
        try:
            secret = secrets[path]
        except (KeyError, TypeError):  # TypeError: an unhashable path
            raise SecretNotFoundError(path) from None
        if not isinstance(secret, dict):
            raise CorruptSecretError(path, "secret is not a JSON object")
        return secret

    def get_simple(self, path: str) -> bytes:
        """Decode and return a simple secret.

        Simple secrets are a convention of key/value pairs in the raw secret
        payload. The following keys are significant:

        ``type``
            This must always be ``simple`` for this method.
        ``value``
            This contains the raw value of the secret token.
        ``encoding``
            (Optional) If present, how to decode the value from how it's
            encoded at rest: ``identity`` (the default: the text as UTF-8) or
            ``base64``.

        :raises SecretNotFoundError: if there is no secret at ``path``.
        :raises CorruptSecretError: if the secret does not follow the convention.
        """
        secret = self._get_secret(path)
        _require_type(path, secret, "simple")
        if "value" not in secret:
            raise CorruptSecretError(path, "secret does not have a value")
        return _decode(path, secret["value"], secret.get("encoding", "identity"))

    def get_versioned(self, path: str) -> VersionedSecret:
        """Decode and return a versioned secret.

        Versioned secrets are a convention of key/value pairs in the raw
        secret payload. The following keys are significant:

        ``type``
            This must always be ``versioned`` for this method.
        ``current``, ``next``, and ``previous``
            The raw secret value's versions. ``current`` is the "active"
            version, which is used for new creation/signing operations.
            ``previous`` and ``next`` are only used for validation (e.g.
            checking signatures) to ensure continuity when keys rotate. Both
            ``previous`` and ``next`` are optional; ``null`` or an empty
            string counts as absent.
        ``encoding``
            (Optional) If present, how to decode the values from how they are
            encoded at rest: ``identity`` (the default) or ``base64``.

        :raises SecretNotFoundError: if there is no secret at ``path``.
        :raises CorruptSecretError: if the secret does not follow the convention.
        """
        secret = self._get_secret(path)
        _require_type(path, secret, "versioned")
        if secret.get("current") is None:
            raise CorruptSecretError(path, "secret does not have a current version")
        encoding = secret.get("encoding", "identity")

        def optional(key: str) -> bytes | None:
            value = secret.get(key)
            return _decode(path, value, encoding) if value else None

        return VersionedSecret(
            previous=optional("previous"),
            current=_decode(path, secret["current"], encoding),
            next=optional("next"),
        )

    def get_credentials(self, path: str) -> CredentialSecret:
        """Return a username and password stored as a secret of type ``credential``.

        The secret must have ``type`` ``credential`` and the string keys
        ``username`` and ``password``; they are returned as :class:`str`, so
        no encoding other than ``identity`` is allowed.

        :raises SecretNotFoundError: if there is no secret at ``path``.
        :raises CorruptSecretError: if the secret does not follow the convention.

        .. versionadded:: 0.31
           Present in the original's code, though not in its reference.
        """
        secret = self._get_secret(path)
        _require_type(path, secret, "credential")
        encoding = secret.get("encoding", "identity")
        if encoding != "identity":
            raise CorruptSecretError(path, "credential secrets must use the identity encoding")
        values = []
        for key in ("username", "password"):
            value = secret.get(key)
            if not isinstance(value, str):
                raise CorruptSecretError(path, f"{key} is {_describe_type(value)}, not a string")
            values.append(value)
        username, password = values
        return CredentialSecret(username, password)

    def _get_vault_field(self, key: str) -> str:
        vault = self._get_data().get("vault")
        if vault is None or key not in vault:
            raise SecretNotFoundError(f"vault.{key}")
        value = vault[key]
        if not isinstance(value, str):
            raise CorruptSecretError("vault", f"{key} is {_describe_type(value)}, not a string")
        return value

    def get_vault_url(self) -> str:
        """Return the URL for accessing Vault directly.

        :raises SecretNotFoundError: if the file has no Vault URL (this is
            also a :exc:`KeyError`, which the original raised).

        .. seealso:: The :mod:`baseplate.context.hvac` module provides
            integration with HVAC, a Vault client.
        """
        return self._get_vault_field("url")

    def get_vault_token(self) -> str:
        """Return a Vault authentication token.

        The token will have policies attached based on the current server's
        Vault role. This is only necessary if talking directly to Vault.

        :raises SecretNotFoundError: if the file has no Vault token (this is
            also a :exc:`KeyError`, which the original raised).

        .. seealso:: The :mod:`baseplate.context.hvac` module provides
            integration with HVAC, a Vault client.
        """
        return self._get_vault_field("token")

    def make_object_for_context(self, name: str, server_span: Span) -> SecretsStore:
        """Return an object that can be added to the context object.

        This allows the secret store to be used with
        :meth:`~baseplate.core.Baseplate.add_to_context`::

            secrets = SecretsStore("/var/local/secrets.json")
            baseplate.add_to_context("secrets", secrets)

        The object is a view of this store that looks at the file once, on
        first use, and then serves that same version for the rest of the
        request, so one request never mixes two versions of a secret.
        """
        return _RequestSecretsStore(self)


class _RequestSecretsStore(SecretsStore):
    """A per-request view: the file is consulted at most once."""

    def __init__(self, store: SecretsStore) -> None:
        self._store = store
        self._filewatcher = store._filewatcher
        self._snapshot: dict[str, Any] | None = None

    def _get_data(self) -> dict[str, Any]:
        if self._snapshot is None:
            self._snapshot = self._store._get_data()
        return self._snapshot


def secrets_store_from_config(
    app_config: Mapping[str, str], timeout: float | None = None, prefix: str = "secrets."
) -> SecretsStore:
    """Configure and return a secrets store.

    The keys useful to :func:`secrets_store_from_config` are prefixed with
    ``prefix``, ``secrets.`` unless told otherwise; a service that reads two
    secrets files gives each its own prefix. One key is supported, and may be
    left out:

    ``path``
        The path to the secrets file generated by the secrets fetcher daemon;
        ``/var/local/secrets.json`` if not set.

    :param app_config: The application configuration which should have
        settings for the secrets store.
    :param timeout: How many seconds to wait for the secrets file to appear;
        by default the store does not wait.
    :param prefix: The prefix of the keys to read, ending in a dot; it may
        itself contain dots (``vault.secrets.``).
    :raises ValueError: ``prefix`` does not end with a dot.

    Under the default prefix, a key other than ``secrets.path`` is logged as
    a warning (see :func:`~baseplate.config.warn_unknown_keys`).
    """
    spec: config.ConfigSpec = {"path": config.Optional(config.String, default=DEFAULT_PATH)}
    if prefix == "secrets.":
        # Baseplate owns the default prefix; another may be shared with the application.
        config.warn_unknown_keys(app_config, {"secrets": spec}, prefix)
    options = config.parse_under_prefix(app_config, prefix, spec)
    return SecretsStore(options.path, timeout=timeout)
