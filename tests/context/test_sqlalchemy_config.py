"""``baseplate.context.sqlalchemy.engine_from_config``: the URL, credentials and pool options."""

from __future__ import annotations

import json

import pytest
import sqlalchemy.exc
from sqlalchemy import make_url, text

from baseplate.config import ConfigurationError
from baseplate.context.sqlalchemy import engine_from_config
from baseplate.secrets import SecretsStore

POSTGRES = "127.0.0.1:5432/test"


@pytest.fixture
def secrets(tmp_path) -> SecretsStore:
    path = tmp_path / "secrets.json"
    path.write_text(
        json.dumps(
            {
                "secrets": {
                    "secret/sql/account": {
                        "type": "credential",
                        "username": "postgres",
                        "password": "from the secret",
                    },
                },
                "vault": {"token": "test", "url": "http://vault.example.com:8200/"},
            }
        )
    )
    return SecretsStore(str(path))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def test_url():
    engine = engine_from_config({"database.url": "sqlite://"})
    assert engine.url == make_url("sqlite://")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_custom_prefix():
    engine = engine_from_config(
        {"database.url": "nope://", "accounts.db.url": "sqlite://"}, prefix="accounts.db."
    )
    assert engine.url == make_url("sqlite://")
    engine.dispose()


def test_other_keys_under_the_prefix_are_ignored():
    engine = engine_from_config({"database.url": "sqlite://", "database.name": "accounts"})
    assert engine.url == make_url("sqlite://")
    engine.dispose()


def test_credentials_replace_those_in_the_url(secrets):
    engine = engine_from_config(
        {
            "database.url": f"postgresql+psycopg://fizz:buzz@{POSTGRES}",
            "database.credentials_secret": "secret/sql/account",
        },
        secrets,
    )
    assert engine.url.username == "postgres"
    assert engine.url.password == "from the secret"
    assert (engine.url.host, engine.url.port, engine.url.database) == ("127.0.0.1", 5432, "test")
    with engine.connect() as connection:  # as the secret's user: "fizz" does not exist
        assert connection.execute(text("SELECT current_user")).scalar_one() == "postgres"
    engine.dispose()


def test_credentials_need_a_secrets_store():
    with pytest.raises(TypeError, match=r"database\.credentials_secret"):
        engine_from_config(
            {
                "database.url": f"postgresql+psycopg://fizz:buzz@{POSTGRES}",
                "database.credentials_secret": "secret/sql/account",
            }
        )


def test_url_is_required():
    with pytest.raises(ConfigurationError) as excinfo:
        engine_from_config({"database.credentials_secret": "secret/sql/account"})
    assert str(excinfo.value) == "database.url: required but missing"


def test_an_unparsable_url_is_reported_without_its_text():
    with pytest.raises(ConfigurationError) as excinfo:
        engine_from_config({"database.url": "hunter2@db.local"})
    assert excinfo.value.key == "database.url"
    assert "hunter2" not in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_an_unknown_dialect_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as excinfo:
        engine_from_config({"database.url": "nosuchdb://db.local/accounts"})
    assert str(excinfo.value) == "database.url: no SQLAlchemy dialect 'nosuchdb'"


def test_a_driver_that_is_not_installed_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as excinfo:
        engine_from_config({"database.url": "mssql+pymssql://db.local/accounts"})
    assert excinfo.value.key == "database.url"
    assert "No module named 'pymssql'" in excinfo.value.error


def test_prefix_must_end_with_a_dot():
    with pytest.raises(ValueError, match="dot"):
        engine_from_config({"database.url": "sqlite://"}, prefix="database")


# -- pool options, in the configuration and as keyword arguments ----------------------


def test_pool_size_and_overflow_bound_the_connections(sqlite_url):
    engine = engine_from_config(
        {"database.url": sqlite_url, "database.pool_size": "1", "database.max_overflow": "0"},
        pool_timeout=0.05,
    )
    with engine.connect(), pytest.raises(sqlalchemy.exc.TimeoutError):
        engine.connect()
    engine.dispose()


def test_keyword_arguments_win_over_the_configuration(sqlite_url):
    engine = engine_from_config(
        {"database.url": sqlite_url, "database.pool_size": "5", "database.max_overflow": "0"},
        pool_size=1,
        pool_timeout=0.05,
    )
    with engine.connect(), pytest.raises(sqlalchemy.exc.TimeoutError):
        engine.connect()
    engine.dispose()


@pytest.mark.parametrize(("recycle", "replaced"), [("0", True), ("1 hour", False)])
def test_pool_recycle(sqlite_url, recycle, replaced):
    engine = engine_from_config({"database.url": sqlite_url, "database.pool_recycle": recycle})
    with engine.connect() as connection:
        first = connection.connection.driver_connection
    with engine.connect() as connection:
        second = connection.connection.driver_connection
    assert (second is not first) is replaced
    engine.dispose()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pool_size", "0"),
        ("max_overflow", "many"),
        ("pool_recycle", "soon"),
        ("pool_pre_ping", "yes"),
    ],
)
def test_invalid_pool_options_name_their_key(key, value):
    with pytest.raises(ConfigurationError) as excinfo:
        engine_from_config({"database.url": "sqlite://", f"database.{key}": value})
    assert excinfo.value.key == f"database.{key}"
