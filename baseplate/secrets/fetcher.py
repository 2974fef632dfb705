"""The secrets fetcher: a sidecar that copies secrets from Vault into a local file.

Run one per server (or pod)::

    python -m baseplate.secrets.fetcher [--once] [--debug] config.ini

It authenticates to Vault as the machine it runs on (an AWS EC2 instance
identity document, or a Kubernetes service-account token), reads the
configured secrets and writes them, with the Vault URL and the token it holds,
to the secrets file that :class:`baseplate.secrets.SecretsStore` reads. It
then renews the token and re-reads the secrets before they expire, for as long
as it runs.

The file is replaced atomically (a temporary file in the same directory,
flushed to disk, then renamed over the old one), so readers see either the old
file or the new one, never a partial write. When Vault cannot be reached or
answers with an error, the fetcher logs it, leaves the previous file alone and
tries again with exponential backoff.

The configuration is the ``[secret-fetcher]`` section of an INI file; the
fetcher's page in the documentation describes every key.

.. versionadded:: 0.31
   ``--once``, ``vault.aws_metadata_url``, ``vault.nonce_path`` and
   ``vault.timeout``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from baseplate import config
from baseplate._extras import missing_extra
from baseplate._files import write_atomically
from baseplate._ini import ConfigFileError, read_config, section_options
from baseplate.retry import ExponentialBackoffRetryPolicy, IndefiniteRetryPolicy

try:
    import hvac
    from hvac import exceptions as hvac_exceptions
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_extra("the secrets fetcher", "hvac", "vault") from exc

__all__ = [
    "CONFIG_SECTION",
    "FetchError",
    "SecretFetcher",
    "Token",
    "fetch_instance_identity_pkcs7",
    "load_config",
    "main",
    "parse_fetcher_config",
    "refresh_delay",
    "retry_delay",
    "write_secrets_file",
]

logger = logging.getLogger("baseplate.secrets.fetcher")

_T = TypeVar("_T")

#: The INI section the fetcher reads its configuration from.
CONFIG_SECTION = "secret-fetcher"

DEFAULT_OUTPUT_PATH = "/var/local/secrets.json"
DEFAULT_OUTPUT_MODE = 0o400
DEFAULT_KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_AWS_METADATA_URL = "http://169.254.169.254"
DEFAULT_NONCE_PATH = "/var/local/vault.nonce"
DEFAULT_TIMEOUT = datetime.timedelta(seconds=5)
DEFAULT_MOUNT_POINTS = {"aws": "aws-ec2", "kubernetes": "kubernetes"}

#: Secrets and the token are refreshed once this fraction of the shortest
#: TTL among them has passed, which leaves the other half for retries.
REFRESH_FRACTION = 0.5
#: The shortest time between two successful refreshes, in seconds.
MIN_REFRESH_DELAY = 1.0
#: The longest time between two successful refreshes, in seconds: rotated
#: secrets appear within the hour even when Vault hands out leases of weeks
#: (its KV default is 32 days).
MAX_REFRESH_DELAY = 3600.0
#: The first wait after a failure, in seconds; it doubles after each further one.
RETRY_INITIAL_DELAY = 1.0
#: The longest wait after failures, in seconds.
RETRY_MAX_DELAY = 60.0
# The waits after failures: see retry_delay.
_RETRY_BACKOFF = ExponentialBackoffRetryPolicy(
    IndefiniteRetryPolicy(), RETRY_INITIAL_DELAY, max_delay=RETRY_MAX_DELAY, jitter=0.5
)
#: How long the callback may run before it is killed, in seconds.
CALLBACK_TIMEOUT = 60.0

_METADATA_TOKEN_PATH = "/latest/api/token"
_METADATA_PKCS7_PATH = "/latest/dynamic/instance-identity/pkcs7"
_METADATA_TOKEN_TTL_SECONDS = "60"


class FetchError(Exception):
    """One step of a refresh failed; the secrets file was left as it was.

    :param step: What the fetcher was doing, e.g. ``"read secret/foo/bar"``.
    :param message: What went wrong.
    """

    def __init__(self, step: str, message: str) -> None:
        super().__init__(step, message)
        self.step = step
        self.message = message

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"


# -- configuration -------------------------------------------------------------


def _required(text: str) -> str:
    if not text:
        raise ValueError("a value is required")
    return text


def _secret_paths(text: str) -> list[str]:
    # Commas, newlines or both: the INI value usually spans several lines.
    return [path for path in re.split(r"[,\s]+", text) if path]


_CONFIG_SPEC: config.ConfigSpec = {
    "vault": {
        "url": _required,
        "role": _required,
        "auth_type": config.Optional(
            config.OneOf(aws="aws", kubernetes="kubernetes"), default="aws"
        ),
        "mount_point": config.Optional(config.String),
        "kubernetes_token_path": config.Optional(
            config.String, default=DEFAULT_KUBERNETES_TOKEN_PATH
        ),
        "aws_metadata_url": config.Optional(config.String, default=DEFAULT_AWS_METADATA_URL),
        "nonce_path": config.Optional(config.String, default=DEFAULT_NONCE_PATH),
        "timeout": config.Optional(config.Timespan, default=DEFAULT_TIMEOUT),
    },
    "output": {
        "path": config.Optional(config.String, default=DEFAULT_OUTPUT_PATH),
        "owner": config.Optional(config.UnixUser),
        "group": config.Optional(config.UnixGroup),
        "mode": config.Optional(config.Integer(base=8), default=DEFAULT_OUTPUT_MODE),
    },
    "secrets": _secret_paths,
    "callback": config.Optional(config.String),
}


def parse_fetcher_config(raw_config: Mapping[str, str]) -> config.ConfigNamespace:
    """Parse the fetcher's options (the ``[secret-fetcher]`` section).

    ``vault.mount_point`` defaults by ``vault.auth_type``: ``aws-ec2`` for
    ``aws`` and ``kubernetes`` for ``kubernetes``.

    :raises baseplate.config.ConfigurationError: An option is missing or invalid.
    """
    cfg = config.parse_config(raw_config, _CONFIG_SPEC)
    if not cfg.vault.mount_point:
        cfg.vault["mount_point"] = DEFAULT_MOUNT_POINTS[cfg.vault.auth_type]
    return cfg


def load_config(path: str) -> config.ConfigNamespace:
    """Read and parse the ``[secret-fetcher]`` section of the INI file at ``path``.

    The file is read as every Baseplate INI file is: keys lower-cased, values
    taken literally (no interpolation). A file that cannot be read or parsed,
    or has no ``[secret-fetcher]`` section, raises the INI reader's
    ``ConfigFileError``, whose message is one line naming the file.

    :raises baseplate.config.ConfigurationError: An option is missing or invalid.
    """
    parser = read_config(path)
    return parse_fetcher_config(section_options(parser, path, CONFIG_SECTION))


# -- timing ---------------------------------------------------------------------


def refresh_delay(ttls: Iterable[float]) -> float:
    """Seconds to wait before the next refresh, given the TTLs just received.

    The next refresh comes when :data:`REFRESH_FRACTION` of the shortest
    positive TTL has passed, bounded by :data:`MIN_REFRESH_DELAY` and
    :data:`MAX_REFRESH_DELAY`. A TTL of zero means "does not expire" and is
    ignored::

        >>> refresh_delay([3600, 2764800])
        1800.0
        >>> refresh_delay([0])
        3600.0
    """
    positive = [float(ttl) for ttl in ttls if ttl > 0]
    if not positive:
        return MAX_REFRESH_DELAY
    delay = min(positive) * REFRESH_FRACTION
    return max(MIN_REFRESH_DELAY, min(MAX_REFRESH_DELAY, delay))


def retry_delay(failures: int) -> float:
    """The longest wait before retrying after ``failures`` consecutive failures.

    The backoff is :class:`baseplate.retry.ExponentialBackoffRetryPolicy`'s,
    capped at :data:`RETRY_MAX_DELAY`. The fetcher waits a random time between
    half this and this, so that a fleet of fetchers does not hit a recovering
    Vault all at once::

        >>> [retry_delay(n) for n in (1, 2, 3, 7, 8)]
        [1.0, 2.0, 4.0, 60.0, 60.0]
    """
    return _RETRY_BACKOFF.delay(max(failures, 1))


# -- the secrets file -----------------------------------------------------------


def _serialize(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_secrets_file(
    path: str,
    secrets: Mapping[str, Mapping[str, Any]],
    vault_url: str,
    vault_token: str,
    mode: int = DEFAULT_OUTPUT_MODE,
    owner: int | None = None,
    group: int | None = None,
) -> bool:
    """Write the secrets file, atomically, unless it already holds this content.

    The document is ``{"secrets": {path: data, ...}, "vault": {"url": ...,
    "token": ...}}``, the format :class:`baseplate.secrets.SecretsStore`
    reads. It is written to a temporary file in the same directory, which is
    given ``mode`` (and ``owner``/``group`` if set) before any secret is
    written to it, flushed to disk and renamed over ``path``.

    :returns: Whether the file was (re)written.
    :raises OSError: The file could not be written; ``path`` is untouched.
    """
    content = _serialize(
        {"secrets": dict(secrets), "vault": {"url": vault_url, "token": vault_token}}
    )
    try:
        with open(path, "rb") as current_file:
            stat = os.fstat(current_file.fileno())
            unchanged = (
                current_file.read() == content
                and stat.st_mode & 0o7777 == mode
                and owner in (None, stat.st_uid)
                and group in (None, stat.st_gid)
            )
    except OSError:
        unchanged = False
    if unchanged:
        return False
    write_atomically(path, content, mode, owner, group)
    return True


# -- authentication -------------------------------------------------------------


def fetch_instance_identity_pkcs7(
    session: requests.Session, metadata_url: str = DEFAULT_AWS_METADATA_URL, timeout: float = 5.0
) -> str:
    """Fetch this EC2 instance's signed identity document, as Vault wants it.

    An IMDSv2 session token is requested first; if the metadata service
    refuses (an IMDSv1-only service), the document is fetched without one.
    Newlines are removed from the PKCS#7 text.

    :raises requests.RequestException: The metadata service could not be reached
        or did not return the document.
    """
    base = metadata_url.rstrip("/")
    headers = {}
    token_response = session.put(
        base + _METADATA_TOKEN_PATH,
        headers={"X-aws-ec2-metadata-token-ttl-seconds": _METADATA_TOKEN_TTL_SECONDS},
        timeout=timeout,
    )
    if token_response.ok:
        headers["X-aws-ec2-metadata-token"] = token_response.text
    response = session.get(base + _METADATA_PKCS7_PATH, headers=headers, timeout=timeout)
    response.raise_for_status()
    return "".join(response.text.split())


@dataclass(frozen=True)
class Token:
    """A Vault token as the fetcher holds it.

    :param client_token: The token itself.
    :param lease_duration: Seconds it is valid for from when it was issued or
        last renewed; 0 means it does not expire.
    :param renewable: Whether ``renew-self`` can extend it.
    :param login_lease_duration: The lease it had when first issued; a renewal
        that grants less than half of this means the token is near its
        maximum TTL, and the fetcher logs in again instead.
    """

    client_token: str
    lease_duration: int
    renewable: bool
    login_lease_duration: int

    @classmethod
    def from_response(cls, response: Any, login_lease_duration: int | None = None) -> Token:
        """Read the ``auth`` block of a login or renewal response.

        :raises ValueError: The response has no usable ``auth`` block.
        """
        auth = response.get("auth") if isinstance(response, Mapping) else None
        if not isinstance(auth, Mapping):
            raise ValueError("response has no auth block")
        client_token = auth.get("client_token")
        if not isinstance(client_token, str) or not client_token:
            raise ValueError("response has no client_token")
        lease_duration = int(auth.get("lease_duration") or 0)
        return cls(
            client_token=client_token,
            lease_duration=lease_duration,
            renewable=bool(auth.get("renewable")),
            login_lease_duration=(
                lease_duration if login_lease_duration is None else login_lease_duration
            ),
        )


_ERRORS = (hvac_exceptions.VaultError, requests.RequestException, OSError, ValueError, TypeError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _step(step: str, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    try:
        return func(*args, **kwargs)
    except FetchError:
        raise
    except _ERRORS as exc:
        raise FetchError(step, _describe(exc)) from exc


# -- the fetcher ------------------------------------------------------------------


class SecretFetcher:
    """Keeps the secrets file up to date from Vault.

    :meth:`refresh` does one round (authenticate or renew, read, write) and
    :meth:`run_once` wraps it with error handling and backoff; both return how
    long to wait before the next round. :meth:`run_forever` loops over
    :meth:`run_once`.

    :param cfg: The parsed configuration, from :func:`parse_fetcher_config`.
    :param sleep: Called to wait between rounds (replaceable in tests).
    """

    def __init__(
        self, cfg: config.ConfigNamespace, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.token: Token | None = None
        #: Consecutive failed rounds; 0 after a success.
        self.failures = 0
        self._timeout = cfg.vault.timeout.total_seconds()
        self._session = requests.Session()
        # The metadata service must be reached directly, never through a proxy.
        self._metadata_session = requests.Session()
        self._metadata_session.trust_env = False

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()
        self._metadata_session.close()

    def __enter__(self) -> SecretFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one round ---------------------------------------------------------------

    def _client(self, token: str) -> Any:
        return hvac.Client(
            url=self.cfg.vault.url, token=token, timeout=self._timeout, session=self._session
        )

    def _read_nonce(self) -> str | None:
        try:
            with open(self.cfg.vault.nonce_path, encoding="utf-8") as nonce_file:
                return nonce_file.read().strip() or None
        except FileNotFoundError:
            return None

    def _save_nonce(self, nonce: str) -> None:
        write_atomically(self.cfg.vault.nonce_path, nonce.encode("utf-8"), 0o600)

    def _login_aws(self, client: Any) -> Any:
        pkcs7 = _step(
            "fetch the EC2 instance identity document",
            fetch_instance_identity_pkcs7,
            self._metadata_session,
            self.cfg.vault.aws_metadata_url,
            self._timeout,
        )
        # Vault binds an instance to the nonce of its first login; every later
        # login must present it, so it has to survive restarts.
        nonce = _step("read the login nonce", self._read_nonce)
        if nonce is None:
            nonce = uuid.uuid4().hex
            _step("save the login nonce", self._save_nonce, nonce)
        response = _step(
            f"log in to auth/{self.cfg.vault.mount_point}",
            client.auth.aws.ec2_login,
            pkcs7=pkcs7,
            nonce=nonce,
            role=self.cfg.vault.role,
            use_token=False,
            mount_point=self.cfg.vault.mount_point,
        )
        metadata = (response.get("auth") or {}).get("metadata") or {}
        issued_nonce = metadata.get("nonce")
        if isinstance(issued_nonce, str) and issued_nonce and issued_nonce != nonce:
            _step("save the login nonce", self._save_nonce, issued_nonce)
        return response

    def _login_kubernetes(self, client: Any) -> Any:
        path = self.cfg.vault.kubernetes_token_path

        def read_jwt() -> str:
            with open(path, encoding="utf-8") as jwt_file:
                return jwt_file.read().strip()

        jwt = _step(f"read the service-account token {path}", read_jwt)
        return _step(
            f"log in to auth/{self.cfg.vault.mount_point}",
            client.auth.kubernetes.login,
            role=self.cfg.vault.role,
            jwt=jwt,
            use_token=False,
            mount_point=self.cfg.vault.mount_point,
        )

    def _login(self, client: Any) -> Token:
        if self.cfg.vault.auth_type == "kubernetes":
            response = self._login_kubernetes(client)
        else:
            response = self._login_aws(client)
        token = _step(f"log in to auth/{self.cfg.vault.mount_point}", Token.from_response, response)
        logger.info(
            "logged in to Vault as role %r, token valid for %d seconds",
            self.cfg.vault.role,
            token.lease_duration,
        )
        return token

    def _renew(self, client: Any, token: Token) -> Token | None:
        try:
            response = client.auth.token.renew_self()
            renewed = Token.from_response(response, token.login_lease_duration)
        except (hvac_exceptions.VaultError, ValueError, TypeError) as exc:
            # Expired, revoked or not renewable after all: log in afresh.
            logger.info("could not renew the Vault token (%s); logging in again", _describe(exc))
            return None
        except requests.RequestException as exc:
            raise FetchError("renew the Vault token", _describe(exc)) from exc
        if renewed.lease_duration < token.login_lease_duration * REFRESH_FRACTION:
            logger.info(
                "the Vault token is near its maximum TTL (%d seconds left); logging in again",
                renewed.lease_duration,
            )
            return None
        logger.debug("renewed the Vault token for %d seconds", renewed.lease_duration)
        return renewed

    def _current_token(self) -> Token:
        token = self.token
        if token is not None:
            if token.renewable:
                renewed = self._renew(self._client(token.client_token), token)
                if renewed is not None:
                    return renewed
            elif token.lease_duration == 0:
                return token  # a token that never expires
        return self._login(self._client(""))

    def _read_secrets(self, token: Token) -> tuple[dict[str, Any], list[int]]:
        secrets: dict[str, Any] = {}
        ttls: list[int] = []
        client = self._client(token.client_token)
        for path in self.cfg.secrets:
            step = f"read {path}"
            response = _step(step, client.read, path)
            if response is None:
                raise FetchError(step, "no secret at this path")
            data = response.get("data") if isinstance(response, Mapping) else None
            if not isinstance(data, Mapping):
                raise FetchError(step, "the response has no data")
            secrets[path] = dict(data)
            ttls.append(int(response.get("lease_duration") or 0))
        return secrets, ttls

    def _run_callback(self) -> None:
        callback = self.cfg.callback
        if not callback:
            return
        try:
            subprocess.run(
                [callback, self.cfg.output.path],
                check=True,
                timeout=CALLBACK_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            logger.error("callback %r failed: %s", callback, _describe(exc))

    def refresh(self) -> float:
        """Do one round: get a valid token, read every secret, write the file.

        Nothing is written unless every step succeeded. After a write that
        changed the file, the configured callback is run.

        :returns: Seconds until the next round, from :func:`refresh_delay`
            over the token's TTL and the secrets' lease durations.
        :raises FetchError: A step failed; the file was left as it was.
        """
        token = self._current_token()
        self.token = token
        secrets, ttls = self._read_secrets(token)
        output = self.cfg.output
        written = _step(
            f"write {output.path}",
            write_secrets_file,
            output.path,
            secrets,
            self.cfg.vault.url,
            token.client_token,
            mode=output.mode,
            owner=output.owner,
            group=output.group,
        )
        if written:
            logger.info("wrote %d secrets to %s", len(secrets), output.path)
            self._run_callback()
        return refresh_delay([token.lease_duration, *ttls])

    def run_once(self) -> float:
        """Do one round, logging any failure instead of raising it.

        :returns: Seconds until the next round: the refresh delay after a
            success, an exponential backoff with jitter after a failure.
        """
        try:
            delay = self.refresh()
        except Exception as exc:
            self.failures += 1
            delay = _RETRY_BACKOFF.sleep_time(self.failures)
            if isinstance(exc, FetchError):
                logger.error(
                    "could not refresh secrets (failure %d), keeping %s; retrying in %.1fs: %s",
                    self.failures,
                    self.cfg.output.path,
                    delay,
                    exc,
                )
            else:
                logger.exception(
                    "unexpected error refreshing secrets (failure %d); retrying in %.1fs",
                    self.failures,
                    delay,
                )
            return delay
        self.failures = 0
        logger.debug("next refresh in %.1fs", delay)
        return delay

    def run_forever(self) -> None:
        """Refresh until the process is stopped."""
        while True:
            self.sleep(self.run_once())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fetcher from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.secrets.fetcher",
        description="Fetch secrets from Vault into a local file and keep them fresh.",
    )
    parser.add_argument("config_file", help="INI file with a [secret-fetcher] section")
    parser.add_argument(
        "--once",
        action="store_true",
        help="fetch once and exit, with status 1 if that failed",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_config(args.config_file)
    except (ConfigFileError, config.ConfigurationError) as exc:
        logger.error("bad configuration: %s", exc)
        return 2

    with SecretFetcher(cfg) as fetcher:
        if args.once:
            try:
                fetcher.refresh()
            except FetchError as exc:
                logger.error("could not fetch secrets: %s", exc)
                return 1
            return 0
        try:
            fetcher.run_forever()
        except KeyboardInterrupt:
            return 0
    return 0  # pragma: no cover - run_forever only ends by an exception


if __name__ == "__main__":
    sys.exit(main())
