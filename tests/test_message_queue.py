"""baseplate.message_queue on real POSIX queues: transfers, timeouts, limits,
gevent cooperation and the command-line tool."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import posix_ipc
import pytest

from baseplate.message_queue import (
    InvalidParametersError,
    MessageQueue,
    MessageQueueError,
    MessageTooLargeError,
    TimedOutError,
)
from tests._helpers import run_python

MSG_MAX = int(Path("/proc/sys/fs/mqueue/msg_max").read_text())
MSGSIZE_MAX = int(Path("/proc/sys/fs/mqueue/msgsize_max").read_text())

# Queues are charged to the user's RLIMIT_MSGQUEUE, which other test runs on
# this machine share: keep them small.
SMALL = {"max_messages": 3, "max_message_size": 64}

MakeQueue = Callable[..., MessageQueue]


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"/bp-test-{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue(name)


@pytest.fixture
def make_queue(queue_name: str) -> Iterator[MakeQueue]:
    """Open handles on the test's queue (SMALL unless told), closing them afterwards."""
    handles: list[MessageQueue] = []

    def make(**sizes: int) -> MessageQueue:
        handle = MessageQueue(queue_name, **{**SMALL, **sizes})
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.close()


def test_round_trip(make_queue):
    queue = make_queue()
    queue.put(b"\x00binary\xff")
    assert queue.get() == b"\x00binary\xff"


def test_str_is_sent_as_utf8(make_queue):
    queue = make_queue()
    queue.put("olá")
    assert queue.get(timeout=0) == "olá".encode()


def test_messages_come_out_in_order(make_queue):
    queue = make_queue()
    for message in (b"1", b"2", b"3"):
        queue.put(message)
    assert [queue.get(), queue.get(), queue.get()] == [b"1", b"2", b"3"]


def test_handles_on_one_name_share_the_queue(make_queue):
    producer, consumer = make_queue(), make_queue()
    producer.put(b"shared")
    assert consumer.get(timeout=0) == b"shared"


def test_an_existing_queue_keeps_its_sizes(make_queue):
    make_queue(max_messages=2, max_message_size=16)
    reopened = make_queue(max_messages=5, max_message_size=32)
    assert (reopened.max_messages, reopened.max_message_size) == (2, 16)


def test_get_with_zero_timeout_on_empty_queue_does_not_wait(make_queue):
    queue = make_queue()
    with pytest.raises(TimedOutError, match="stayed empty"):
        queue.get(timeout=0)


def test_get_times_out_on_empty_queue(make_queue):
    queue = make_queue()
    with pytest.raises(TimedOutError) as info:
        queue.get(timeout=0.05)
    assert isinstance(info.value, MessageQueueError)


def test_put_with_zero_timeout_on_full_queue_does_not_wait(make_queue):
    queue = make_queue(max_messages=1)
    queue.put(b"first")
    with pytest.raises(TimedOutError, match="stayed full"):
        queue.put(b"second", timeout=0)
    assert queue.get(timeout=0) == b"first"
    with pytest.raises(TimedOutError):
        queue.get(timeout=0)


def test_put_times_out_on_full_queue(make_queue):
    queue = make_queue(max_messages=1)
    queue.put(b"first")
    with pytest.raises(TimedOutError):
        queue.put(b"second", timeout=0.05)


def test_negative_timeout_means_do_not_wait(make_queue):
    queue = make_queue()
    with pytest.raises(TimedOutError):
        queue.get(timeout=-1)


@pytest.mark.parametrize("timeout", [float("inf"), 1e17])
def test_infinite_and_huge_timeouts_wait_for_the_message(make_queue, timeout):
    queue = make_queue(max_messages=1)
    received: list[bytes] = []
    consumer = threading.Thread(target=lambda: received.append(queue.get(timeout=timeout)))
    consumer.start()
    time.sleep(0.05)
    queue.put(b"wake up")
    consumer.join(timeout=10)
    assert received == [b"wake up"]

    queue.put(b"full")
    producer = threading.Thread(target=lambda: queue.put(b"second", timeout=timeout))
    producer.start()
    time.sleep(0.05)
    assert queue.get(timeout=0) == b"full"
    producer.join(timeout=10)
    assert queue.get(timeout=0) == b"second"


@pytest.mark.parametrize("timeout", [float("nan"), 1e19, float("1e300")])
def test_nan_and_overlong_timeouts_are_refused(make_queue, timeout):
    queue = make_queue(max_messages=1)
    with pytest.raises(InvalidParametersError, match="timeout") as info:
        queue.get(timeout=timeout)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidParametersError, match="timeout"):
        queue.put(b"x", timeout=timeout)
    with pytest.raises(TimedOutError):  # the refused put sent nothing
        queue.get(timeout=0)


def test_blocking_get_in_a_thread_wakes_up_on_put(make_queue):
    # A thread that never used gevent blocks in the kernel, not in a hub.
    queue = make_queue()
    received: list[bytes] = []
    consumer = threading.Thread(target=lambda: received.append(queue.get(timeout=10)))
    consumer.start()
    time.sleep(0.05)
    queue.put(b"wake up")
    consumer.join(timeout=10)
    assert received == [b"wake up"]


def test_blocking_put_in_a_thread_wakes_up_on_get(make_queue):
    queue = make_queue(max_messages=1)
    queue.put(b"first")
    producer = threading.Thread(target=lambda: queue.put(b"second", timeout=10))
    producer.start()
    time.sleep(0.05)
    assert queue.get(timeout=0) == b"first"
    producer.join(timeout=10)
    assert queue.get(timeout=0) == b"second"


def test_message_over_max_message_size(make_queue):
    queue = make_queue(max_message_size=8)
    queue.put(b"12345678")
    with pytest.raises(MessageTooLargeError) as info:
        queue.put(b"123456789")
    assert isinstance(info.value, ValueError)
    assert (info.value.size, info.value.max_message_size) == (9, 8)
    assert "9 bytes" in str(info.value)


def test_max_messages_over_the_system_limit(queue_name):
    with pytest.raises(InvalidParametersError) as info:
        MessageQueue(queue_name, max_messages=MSG_MAX + 1, max_message_size=8)
    message = str(info.value)
    assert f"max_messages={MSG_MAX + 1}" in message
    assert "/proc/sys/fs/mqueue/msg_max" in message
    assert f"sysctl -w fs.mqueue.msg_max={MSG_MAX + 1}" in message
    assert info.value.setting == "fs.mqueue.msg_max"
    assert isinstance(info.value, ValueError)  # what the original raised


def test_max_message_size_over_the_system_limit(queue_name):
    with pytest.raises(InvalidParametersError) as info:
        MessageQueue(queue_name, max_messages=1, max_message_size=MSGSIZE_MAX + 1)
    assert "/proc/sys/fs/mqueue/msgsize_max" in str(info.value)
    assert info.value.setting == "fs.mqueue.msgsize_max"


@pytest.mark.parametrize(("max_messages", "max_message_size"), [(0, 8), (1, 0)])
def test_sizes_must_be_positive(queue_name, max_messages, max_message_size):
    with pytest.raises(InvalidParametersError, match="must be at least 1") as info:
        MessageQueue(queue_name, max_messages, max_message_size)
    assert info.value.setting is None


def test_used_up_queue_space_is_an_os_error(queue_name):
    """With no RLIMIT_MSGQUEUE left the system refuses the queue: the error
    names the limit and is an OSError, as the original's was."""
    script = f"""
import resource
from baseplate.message_queue import MessageQueue, MessageQueueError, MessageQueueOSError
resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
try:
    MessageQueue({queue_name!r}, max_messages=10, max_message_size=1024)
except OSError as exc:
    assert isinstance(exc, MessageQueueOSError) and isinstance(exc, MessageQueueError)
    print(exc)
"""
    done = run_python("-c", script)
    assert "RLIMIT_MSGQUEUE" in done.stdout, done.stderr


@pytest.mark.parametrize("name", ["", "/", "no-slash", "/two/slashes", "/" + "x" * 300])
def test_malformed_names(name):
    with pytest.raises(InvalidParametersError):
        MessageQueue(name, max_messages=1, max_message_size=8)


def test_unlink_removes_the_name_but_open_handles_keep_working(make_queue):
    queue = make_queue()
    queue.put(b"kept")
    queue.unlink()
    fresh = make_queue()
    with pytest.raises(TimedOutError):
        fresh.get(timeout=0)
    assert queue.get(timeout=0) == b"kept"


def test_unlink_twice_is_harmless(make_queue):
    queue = make_queue()
    queue.unlink()
    queue.unlink()


def test_use_after_close_raises(make_queue):
    queue = make_queue()
    queue.close()
    queue.close()
    for operation in (queue.get, lambda timeout: queue.put(b"x", timeout)):
        with pytest.raises(MessageQueueError, match="closed"):
            operation(timeout=0)
    assert "closed" in repr(queue)


def test_context_manager_closes(queue_name):
    with MessageQueue(queue_name, **SMALL) as queue:
        queue.put(b"x")
    with pytest.raises(MessageQueueError, match="closed"):
        queue.get(timeout=0)


# gevent: a greenlet waiting on the queue must leave the hub free for others.


def test_greenlet_blocked_on_get_lets_others_run(make_queue):
    queue = make_queue()
    events: list[str] = []

    def consumer():
        message = queue.get(timeout=5)
        events.append(f"got {message.decode()}")

    def producer():
        for tick in range(3):
            gevent.sleep(0.01)
            events.append(f"tick {tick}")
        queue.put(b"hello")

    gevent.joinall([gevent.spawn(consumer), gevent.spawn(producer)], raise_error=True)
    assert events == ["tick 0", "tick 1", "tick 2", "got hello"]


def test_greenlet_blocked_on_put_lets_others_run(make_queue):
    queue = make_queue(max_messages=1)
    queue.put(b"first")
    events: list[str] = []

    def producer():
        queue.put(b"second", timeout=5)
        events.append("put second")

    def consumer():
        gevent.sleep(0.02)
        events.append(f"got {queue.get(timeout=0).decode()}")

    gevent.joinall([gevent.spawn(producer), gevent.spawn(consumer)], raise_error=True)
    assert events == ["got first", "put second"]
    assert queue.get(timeout=0) == b"second"


def test_greenlet_get_times_out_without_blocking_the_hub(make_queue):
    queue = make_queue()
    ticks: list[int] = []

    def ticker():
        for tick in range(3):
            ticks.append(tick)
            gevent.sleep(0.01)

    waiter = gevent.spawn(queue.get, timeout=0.1)
    gevent.joinall([waiter, gevent.spawn(ticker)])
    assert isinstance(waiter.exception, TimedOutError)
    assert ticks == [0, 1, 2]


def test_two_greenlets_waiting_on_one_queue_each_get_a_message(make_queue):
    queue = make_queue()
    consumers = [gevent.spawn(queue.get, timeout=5) for _ in range(2)]
    gevent.sleep(0.02)
    queue.put(b"a")
    queue.put(b"b")
    gevent.joinall(consumers, raise_error=True)
    assert sorted(consumer.value for consumer in consumers) == [b"a", b"b"]


# The command-line tool.


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "baseplate.message_queue", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )


def cli_sizes() -> list[str]:
    return ["--max-messages", "3", "--max-message-size", "64"]


def test_cli_write_then_read(queue_name, make_queue):
    written = run_cli("--write", queue_name, *cli_sizes(), stdin=b"hello!\nsecond line\n")
    assert written.returncode == 0, written.stderr
    queue = make_queue()
    assert (queue.max_messages, queue.max_message_size) == (3, 64)

    reader = subprocess.Popen(
        [sys.executable, "-m", "baseplate.message_queue", "--read", queue_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == b"hello!\n"
        assert reader.stdout.readline() == b"second line\n"
        queue.put(b"live")
        assert reader.stdout.readline() == b"live\n"
        # The reader waits in the kernel: an interrupt still stops it, quietly.
        reader.send_signal(signal.SIGINT)
        assert reader.wait(timeout=10) == 130
        assert reader.stderr is not None
        assert reader.stderr.read() == b""
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        for stream in (reader.stdout, reader.stderr):
            if stream is not None:
                stream.close()
    with pytest.raises(TimedOutError):
        queue.get(timeout=0)


def test_cli_write_too_long_a_line(queue_name):
    result = run_cli("--write", queue_name, *cli_sizes(), stdin=b"x" * 65 + b"\n")
    assert result.returncode == 1
    assert b"65 bytes" in result.stderr


def test_cli_over_the_limit_explains(queue_name):
    result = run_cli("--read", queue_name, "--max-messages", str(MSG_MAX + 1))
    assert result.returncode == 1
    assert b"fs.mqueue.msg_max" in result.stderr


def test_cli_needs_a_mode(queue_name):
    result = run_cli(queue_name)
    assert result.returncode == 2
    assert b"--read" in result.stderr


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in (b"--read", b"--write", b"--max-messages", b"--max-message-size"):
        assert option in result.stdout
