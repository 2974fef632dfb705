"""Configuration mistakes in the ``*_from_config`` helpers Baseplate owns.

Each bad or missing value is a :exc:`~baseplate.config.ConfigurationError`
naming the key (which ``baseplate-serve`` prints as one line; see
tests/server/test_serve_config_mistakes.py), and each unknown key under
``metrics.``, ``tracing.``, ``sentry.`` and ``secrets.`` is one warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from baseplate import (
    config,
    error_reporter_from_config,
    metrics_client_from_config,
    tracing_client_from_config,
)
from baseplate.secrets import secrets_store_from_config

TRACING = {"tracing.service_name": "svc"}


def make_tracing(raw: Mapping[str, str]) -> Any:
    return tracing_client_from_config({**TRACING, **raw}, log_if_unconfigured=False)


def make_sentry(raw: Mapping[str, str]) -> Any:
    return error_reporter_from_config(raw, __name__)


@pytest.mark.parametrize(
    ("make", "raw", "key", "error"),
    [
        (metrics_client_from_config, {}, "metrics.namespace", "required but missing"),
        (
            metrics_client_from_config,
            {"metrics.namespace": "ns", "metrics.endpoint": "nowhere"},
            "metrics.endpoint",
            "invalid value 'nowhere': expected host:port or a socket path",
        ),
        (tracing_client_from_config, {}, "tracing.service_name", "required but missing"),
        (
            make_tracing,
            {"tracing.exporter": "zipkin"},
            "tracing.zipkin.endpoint",
            "required by tracing.exporter = zipkin",
        ),
        (
            make_tracing,
            {"tracing.zipkin.endpoint": "localhost:9411"},
            "tracing.zipkin.endpoint",
            "invalid value 'localhost:9411': expected an http:// or https:// URL",
        ),
        (
            make_tracing,
            {"tracing.otlp.endpoint": "http://"},
            "tracing.otlp.endpoint",
            "invalid value 'http://': expected an http:// or https:// URL",
        ),
        (
            make_sentry,
            {"sentry.dsn": "nowhere"},
            "sentry.dsn",
            "invalid value 'nowhere': Unsupported scheme ''",
        ),
        (
            make_sentry,
            {"sentry.sample_rate": "2"},
            "sentry.sample_rate",
            "invalid value '2': expected a percentage, such as '37.5%'",
        ),
    ],
    ids=[
        "metrics-missing",
        "metrics-bad",
        "tracing-missing",
        "zipkin-missing",
        "zipkin-bad",
        "otlp-bad",
        "sentry-dsn-bad",
        "sentry-rate-bad",
    ],
)
def test_bad_and_missing_values_are_configuration_errors_naming_the_key(
    make: Callable[[Mapping[str, str]], Any], raw: dict[str, str], key: str, error: str
) -> None:
    with pytest.raises(config.ConfigurationError) as info:
        make(raw)
    assert (info.value.key, info.value.error) == (key, error)


def unknown_key_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == config.UNKNOWN_KEYS_LOGGER and record.levelname == "WARNING"
    ]


@pytest.mark.parametrize(
    ("make", "raw", "expected"),
    [
        (
            metrics_client_from_config,
            {"metrics.namespace": "ns", "metrics.namspace": "typo", "tracing.namspace": "x"},
            ["unknown configuration key metrics.namspace: did you mean metrics.namespace?"],
        ),
        (
            make_tracing,
            {
                "tracing.smaple_rate": "50%",
                "tracing.zipkin.endpont": "http://zipkin",
                "tracing.tail.errors": "true",
                "tracing.tail.slower_than": "1 second",
                "tracing.num_conns": "3",
            },
            [
                "unknown configuration key tracing.smaple_rate: did you mean tracing.sample_rate?",
                "unknown configuration key tracing.zipkin.endpont: "
                "did you mean tracing.zipkin.endpoint?",
            ],
        ),
        (
            make_sentry,
            {"sentry.environmnet": "prod", "sentry.site": "here", "sentry.colour": "blue"},
            [
                "unknown configuration key sentry.environmnet: did you mean sentry.environment?",
                "unknown configuration key sentry.colour",
            ],
        ),
        (
            secrets_store_from_config,
            {"secrets.pth": "/var/local/secrets.json", "secrets.path": "/tmp/s.json"},
            ["unknown configuration key secrets.pth: did you mean secrets.path?"],
        ),
    ],
    ids=["metrics", "tracing", "sentry", "secrets"],
)
def test_unknown_keys_under_baseplates_prefixes_are_warned(
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Mapping[str, str]], Any],
    raw: dict[str, str],
    expected: list[str],
) -> None:
    with caplog.at_level("WARNING", logger=config.UNKNOWN_KEYS_LOGGER):
        make(raw)
    assert unknown_key_warnings(caplog) == expected


def test_a_secrets_store_under_its_own_prefix_does_not_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The application chose the prefix, and may keep other keys under it (vault.timeout).
    with caplog.at_level("WARNING", logger=config.UNKNOWN_KEYS_LOGGER):
        secrets_store_from_config(
            {"vault.path": "/tmp/s.json", "vault.timeout": "1 second"}, prefix="vault."
        )
    assert unknown_key_warnings(caplog) == []
