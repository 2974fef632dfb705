"""A tiny program that reports statsd metrics through baseplate.metrics.

It starts its own statsd stand-in (a UDP socket on 127.0.0.1), handles a few
pretend requests that count, time and batch metrics, and prints every
datagram the stand-in receives, exactly as statsd would see it.
"""

from __future__ import annotations

import random
import socket
import time

from baseplate import metrics_client_from_config

REQUESTS = 5


def handle_request(batch, request_number: int) -> None:
    """Pretend to do some work, recording metrics into the request's batch."""
    with batch.timer("handler.render"):
        time.sleep(random.uniform(0.001, 0.01))
    batch.counter("handler.requests").increment()
    if request_number % 2:
        batch.counter("handler.cache.miss").increment()
    batch.histogram("handler.payload_bytes").add_sample(random.randint(200, 900))


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(1.0)
    host, port = listener.getsockname()

    client = metrics_client_from_config(
        {"metrics.namespace": "example", "metrics.endpoint": f"{host}:{port}"}
    )
    print(f"statsd stand-in listening on {host}:{port}\n")

    client.gauge("workers").replace(1)
    for request_number in range(REQUESTS):
        with client.batch() as batch:
            handle_request(batch, request_number)

    for datagram_number in range(1 + REQUESTS):
        datagram = listener.recv(65535).decode("ascii")
        print(f"datagram {datagram_number + 1}:")
        for line in datagram.split("\n"):
            print(f"    {line}")
    listener.close()


if __name__ == "__main__":
    main()
