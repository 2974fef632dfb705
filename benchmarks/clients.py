"""What an instrumented client adds to each call, against the bare client, beside the original.

For each client (a Redis ``GET``, a memcached ``get``, one SQL ``select 1``
on SQLite) a worker process times the same call made two ways on the same
real server: with the bare client library, and through the Baseplate proxy
that a context factory puts on the request's context, inside a server span,
with the metrics observer sending to a UDP socket nobody reads (no trace
exporter). The difference is what the instrumentation costs per call.

The worker uses only the documented API, so the same script runs against
this project and against the original Baseplate 0.30.9 installed in a venv
of its own (``pip install baseplate==0.30.9.post0 'redis<3' 'sqlalchemy<1.4'
pymemcache gevent thrift posix_ipc requests``), given with
``--original PYTHON``. The implementations take turns, round by round, and
medians are reported: machines are noisy. Redis is the one on
127.0.0.1:6379; memcached is started on a spare loopback port for the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from benchmarks._compare import Medians, command_line, interpreters, run_worker

WORKER = r"""
import json, socket, sys, time, types

import baseplate
from baseplate import Baseplate, metrics_client_from_config

kind, calls, sink, memcached = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def per_call_us(call, n):
    for _ in range(min(n, 200)):
        call()
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


bp = Baseplate()
bp.configure_metrics(metrics_client_from_config(
    {"metrics.namespace": "bench", "metrics.endpoint": sink}))

if kind == "redis":
    import redis
    from baseplate.context.redis import RedisContextFactory, pool_from_config
    pool = pool_from_config({"redis.url": "redis://127.0.0.1:6379/0"})
    bare = redis.StrictRedis(connection_pool=pool)
    bare.set("bench:clients", "x")
    bp.add_to_context("redis", RedisContextFactory(pool))
    bare_call = lambda: bare.get("bench:clients")
    proxy_call = lambda context: context.redis.get("bench:clients")
elif kind == "memcache":
    from baseplate.context.memcache import MemcacheContextFactory, pool_from_config
    pool = pool_from_config({"memcache.endpoint": memcached})
    pool.set("bench-clients", b"x")
    bp.add_to_context("cache", MemcacheContextFactory(pool))
    bare_call = lambda: pool.get("bench-clients")
    proxy_call = lambda context: context.cache.get("bench-clients")
else:
    import sqlalchemy
    from baseplate.context.sqlalchemy import SQLAlchemyEngineContextFactory
    engine = sqlalchemy.create_engine("sqlite://")
    bp.add_to_context("db", SQLAlchemyEngineContextFactory(engine))
    select = sqlalchemy.text("select 1")

    def run(target):
        with target.connect() as connection:
            connection.execute(select).fetchall()

    bare_call = lambda: run(engine)
    proxy_call = lambda context: run(context.db)

bare_us = per_call_us(bare_call, calls)
context = types.SimpleNamespace()
span = bp.make_server_span(context, "bench")
span.start()
proxy_us = per_call_us(lambda: proxy_call(context), calls)
span.finish()
print(json.dumps({"bare_us": bare_us, "proxy_us": proxy_us}))
"""

CLIENTS = ("redis", "memcache", "sql")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_memcached() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    root = ["-u", "root"] if os.geteuid() == 0 else []
    server = subprocess.Popen(
        ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", *root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("memcached did not start")


def main(quick: bool = False, original: str | None = None) -> None:
    """Print, per client, the µs each implementation adds to a call over the bare client."""
    calls, rounds = (2000, 3) if quick else (10000, 5)
    pythons = interpreters(original)
    sink_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_socket.bind(("127.0.0.1", 0))
    sink = f"127.0.0.1:{sink_socket.getsockname()[1]}"
    memcached, memcached_address = _start_memcached()
    added = Medians()
    bare = Medians()
    try:
        for _ in range(rounds):
            for kind in CLIENTS:
                for name, python in pythons.items():
                    result = run_worker(
                        python, WORKER, kind, str(calls), sink, memcached_address, label=kind
                    )
                    added.add(kind, name, result["proxy_us"] - result["bare_us"])
                    bare.add(kind, name, result["bare_us"])
    finally:
        memcached.kill()
        memcached.wait()
        sink_socket.close()
    print(f"instrumented client call over the bare client (median of {rounds} rounds x {calls})")
    print(f"{'client':<10} {'implementation':<18} {'bare µs':>9} {'added µs':>9}")
    for kind in CLIENTS:
        for name in pythons:
            print(
                f"{kind:<10} {name:<18} {bare.median(kind, name):>9.1f} "
                f"{added.median(kind, name):>9.1f}"
            )


if __name__ == "__main__":
    command_line(main, __doc__.splitlines()[0], quick="calls")
