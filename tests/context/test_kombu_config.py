"""``baseplate.context.kombu``: connections and exchanges made from the configuration."""

from __future__ import annotations

import pytest
from kombu import Connection, Exchange

from baseplate.config import ConfigurationError
from baseplate.context.kombu import connection_from_config, exchange_from_config

# -- connection_from_config ----------------------------------------------------------


def test_connection_from_hostname_and_virtual_host():
    connection = connection_from_config(
        {"amqp.hostname": "rabbit.local", "amqp.virtual_host": "events"}
    )
    assert isinstance(connection, Connection)
    assert connection.hostname == "rabbit.local"
    assert connection.virtual_host == "events"
    assert connection.as_uri() == "amqp://guest:**@rabbit.local:5672/events"


def test_connection_virtual_host_defaults_to_the_root():
    connection = connection_from_config({"amqp.hostname": "rabbit.local"})
    assert connection.virtual_host == "/"


def test_connection_credentials_come_in_a_hostname_url():
    connection = connection_from_config(
        {"amqp.hostname": "amqp://publisher:s3cret@rabbit.local:5673/events"}
    )
    assert (connection.hostname, connection.port) == ("rabbit.local", 5673)
    assert (connection.userid, connection.password) == ("publisher", "s3cret")
    assert connection.virtual_host == "events"


def test_connection_keyword_arguments_pass_through_and_win():
    connection = connection_from_config(
        {"amqp.hostname": "rabbit.local", "amqp.virtual_host": "events"},
        virtual_host="other",
        userid="publisher",
        password="s3cret",
        connect_timeout=0.5,
        transport_options={"confirm_publish": True},
    )
    assert connection.hostname == "rabbit.local"
    assert connection.virtual_host == "other"
    assert (connection.userid, connection.password) == ("publisher", "s3cret")
    assert connection.connect_timeout == 0.5
    assert connection.transport_options == {"confirm_publish": True}


def test_a_key_given_as_a_keyword_need_not_be_configured():
    connection = connection_from_config({}, hostname="rabbit.local")
    assert connection.hostname == "rabbit.local"


def test_connection_custom_prefix():
    connection = connection_from_config(
        {"amqp.hostname": "wrong.local", "queues.rabbit.hostname": "rabbit.local"},
        prefix="queues.rabbit.",
    )
    assert connection.hostname == "rabbit.local"


def test_connection_hostname_is_required():
    with pytest.raises(ConfigurationError) as excinfo:
        connection_from_config({"amqp.virtual_host": "events"})
    assert excinfo.value.key == "amqp.hostname"
    assert str(excinfo.value) == "amqp.hostname: required but missing"


@pytest.mark.parametrize("prefix", ["amqp", "", "amqp..", ".amqp."])
def test_the_prefix_must_be_dotted_names_ending_with_a_dot(prefix):
    with pytest.raises(ValueError, match="dot"):
        connection_from_config({"amqp.hostname": "rabbit.local"}, prefix=prefix)
    with pytest.raises(ValueError, match="dot"):
        exchange_from_config({"amqp.exchange_type": "direct"}, prefix=prefix)


# -- exchange_from_config ------------------------------------------------------------


def test_exchange_from_name_and_type():
    exchange = exchange_from_config({"amqp.exchange_name": "things", "amqp.exchange_type": "topic"})
    assert isinstance(exchange, Exchange)
    assert (exchange.name, exchange.type) == ("things", "topic")


def test_exchange_name_defaults_to_the_default_exchange():
    exchange = exchange_from_config({"amqp.exchange_type": "direct"})
    assert exchange.name == ""


def test_exchange_type_is_required():
    with pytest.raises(ConfigurationError) as excinfo:
        exchange_from_config({"amqp.exchange_name": "things"})
    assert excinfo.value.key == "amqp.exchange_type"
    assert "\n" not in str(excinfo.value)


def test_exchange_keyword_arguments_pass_through_and_win():
    exchange = exchange_from_config(
        {"rabbit.exchange_name": "things", "rabbit.exchange_type": "topic"},
        prefix="rabbit.",
        type="fanout",
        durable=False,
        delivery_mode="transient",
    )
    assert (exchange.name, exchange.type) == ("things", "fanout")
    assert exchange.durable is False
    assert exchange.delivery_mode == Exchange.TRANSIENT_DELIVERY_MODE


def test_exchange_type_given_as_a_keyword_need_not_be_configured():
    exchange = exchange_from_config({"amqp.exchange_name": "things"}, type="headers")
    assert (exchange.name, exchange.type) == ("things", "headers")
