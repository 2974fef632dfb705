"""Secure access to secret tokens stored in Vault.

The secrets fetcher, a sidecar, copies the secrets a server may see from Vault
into a local file; the :class:`SecretsStore` gives the application access to
that file, reloading it whenever the fetcher rewrites it.
"""

from baseplate.secrets.store import (
    CorruptSecretError,
    CredentialSecret,
    SecretNotFoundError,
    SecretsError,
    SecretsNotAvailableError,
    SecretsStore,
    VersionedSecret,
    secrets_store_from_config,
)

__all__ = [
    "CorruptSecretError",
    "CredentialSecret",
    "SecretNotFoundError",
    "SecretsError",
    "SecretsNotAvailableError",
    "SecretsStore",
    "VersionedSecret",
    "secrets_store_from_config",
]
