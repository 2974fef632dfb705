"""The consumer process of the tests: ``baseplate-script consumer.ini
tests.queue_consumer.consumer_app:run`` (threads), or the same under gevent through
:mod:`tests.queue_consumer.gevent_script`.

Its handler writes one JSON line per message it handled, after handling it, to
``consumer.record``: the body and whether the broker redelivered it. It waits
``consumer.delay`` seconds first, and raises on a message whose body is
``consumer.fail_on``. The last line of its stdout says how ``consume`` ended.
"""

from __future__ import annotations

import json
import time
from typing import Any

from baseplate import config, metrics_client_from_config
from baseplate.context.kombu import connection_from_config, exchange_from_config
from baseplate.core import Baseplate
from baseplate.queue_consumer import consume

SPEC = {
    "consumer": {
        "queue_name": config.String,
        "routing_keys": config.TupleOf(config.String),
        "record": config.String,
        "delay": config.Optional(config.Seconds, default=0.0),
        "fail_on": config.Optional(config.String),
    }
}


class HandlerFailedError(Exception):
    """What the handler raises on the message it was told to fail on."""


def run(app_config: dict[str, str]) -> None:
    cfg = config.parse_config(app_config, SPEC).consumer
    baseplate = Baseplate()
    if app_config.get("metrics.endpoint"):
        baseplate.configure_metrics(metrics_client_from_config(app_config))

    with open(cfg.record, "a", encoding="utf-8") as record:

        def handle(context: Any, body: str, message: Any) -> None:
            assert context.trace.name == cfg.queue_name
            time.sleep(cfg.delay)
            if body == cfg.fail_on:
                raise HandlerFailedError(body)
            line = {"body": body, "redelivered": message.delivery_info["redelivered"]}
            record.write(json.dumps(line) + "\n")
            record.flush()

        consume(
            baseplate,
            exchange=exchange_from_config(app_config),
            connection=connection_from_config(app_config),
            queue_name=cfg.queue_name,
            routing_keys=cfg.routing_keys,
            handler=handle,
        )
    print("consume returned", flush=True)
