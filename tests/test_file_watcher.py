"""baseplate.file_watcher against real files."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest

from baseplate import file_watcher
from baseplate.file_watcher import FileWatcher, WatchedFileNotAvailableError


class CountingParser:
    """``json.load`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, f):
        self.calls += 1
        return json.load(f)


def replace(path, text: str) -> None:
    """Write the file the way the sidecars do: a temporary file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data.json"


@pytest.fixture
def parser():
    return CountingParser()


class Misses(logging.Handler):
    """Counts the times the constructor looked for the file and could not load it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if ": not available yet: " in record.getMessage():
            self.count += 1
            self.first.set()


@pytest.fixture
def misses():
    """The constructor's failed looks at the file, from its debug log."""
    logger = logging.getLogger("baseplate.file_watcher")
    handler = Misses()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def write_after_a_miss(misses: Misses, path, text: str) -> threading.Thread:
    """Replace the file once the constructor has looked for it and failed."""

    def write() -> None:
        if misses.first.wait(30):
            replace(path, text)

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def test_reads_and_parses_the_file(path, parser):
    path.write_text('{"one": 1, "two": 2}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"one": 1, "two": 2}


def test_unchanged_file_is_parsed_once(path, parser):
    path.write_text('{"a": 1}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    for _ in range(50):
        assert watcher.get_data() == {"a": 1}
    assert parser.calls == 1


def test_replaced_file_is_parsed_again(path, parser):
    replace(path, '{"a": 1}')
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"a": 1}
    replace(path, '{"a": 2}')  # same size: noticed through the new inode
    assert watcher.get_data() == {"a": 2}
    assert watcher.get_data() == {"a": 2}
    assert parser.calls == 2


def test_file_rewritten_in_place_is_parsed_again(path, parser):
    path.write_text('{"a": 1}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"a": 1}
    with path.open("w", encoding="utf-8") as f:
        f.write('{"a": 1, "b": 2}')
    assert watcher.get_data() == {"a": 1, "b": 2}
    assert parser.calls == 2


def test_touched_file_is_parsed_again(path, parser):
    path.write_text('{"a": 1}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    watcher.get_data()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    watcher.get_data()
    assert parser.calls == 2


def test_without_timeout_the_constructor_does_not_touch_the_file(path, parser):
    watcher = FileWatcher(str(path), parser=parser)
    assert parser.calls == 0
    path.write_text("[]", encoding="utf-8")
    assert watcher.get_data() == []


def test_missing_file_raises_with_the_path(path, parser):
    watcher = FileWatcher(str(path), parser=parser)
    with pytest.raises(WatchedFileNotAvailableError) as info:
        watcher.get_data()
    assert info.value.path == str(path)
    assert isinstance(info.value.inner, FileNotFoundError)
    assert str(path) in str(info.value)
    assert parser.calls == 0


def test_constructor_waits_for_the_file_to_appear(path, parser, misses):
    writer = write_after_a_miss(misses, path, '{"late": true}')
    try:
        watcher = FileWatcher(str(path), parser=parser, timeout=30)
        assert misses.count >= 1  # it did wait: the file was missing at first
        assert parser.calls == 1  # loaded during construction
        assert watcher.get_data() == {"late": True}
        assert parser.calls == 1
    finally:
        writer.join()


def test_constructor_waits_for_the_file_to_become_parsable(path, parser, misses):
    path.write_text("{incomplete", encoding="utf-8")
    writer = write_after_a_miss(misses, path, '{"complete": true}')
    try:
        watcher = FileWatcher(str(path), parser=parser, timeout=30)
        assert misses.count >= 1
        assert watcher.get_data() == {"complete": True}
    finally:
        writer.join()


def test_timeout_runs_out_with_an_error_naming_the_path_and_the_cause(path, parser):
    started = time.monotonic()
    with pytest.raises(WatchedFileNotAvailableError) as info:
        FileWatcher(str(path), parser=parser, timeout=0.2)
    assert time.monotonic() - started >= 0.2  # it waited out the whole budget
    assert info.value.path == str(path)
    assert "not available after 0.2 seconds" in str(info.value)
    assert str(path) in str(info.value)
    # The last error met while waiting is the cause.
    cause = info.value.__cause__
    assert isinstance(cause, WatchedFileNotAvailableError)
    assert isinstance(cause.inner, FileNotFoundError)
    assert parser.calls == 0


def test_timeout_runs_out_on_a_file_that_never_parses(path, parser):
    path.write_text("{never valid", encoding="utf-8")
    with pytest.raises(WatchedFileNotAvailableError) as info:
        FileWatcher(str(path), parser=parser, timeout=0.1)
    assert "Expecting property name" in str(info.value)
    assert isinstance(info.value.__cause__.inner, json.JSONDecodeError)


def test_zero_timeout_tries_once(path, parser, misses):
    path.write_text("5", encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser, timeout=0)
    assert parser.calls == 1
    assert watcher.get_data() == 5
    path.unlink()
    with pytest.raises(WatchedFileNotAvailableError, match="after 0 seconds"):
        FileWatcher(str(path), parser=parser, timeout=0)
    assert misses.count == 1


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_bad_timeout_is_rejected(path, parser, timeout):
    with pytest.raises(ValueError, match="timeout"):
        FileWatcher(str(path), parser=parser, timeout=timeout)


def test_file_removed_after_loading_keeps_the_data_then_recovers(path, parser, caplog):
    path.write_text('{"a": 1}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"a": 1}
    path.unlink()
    with caplog.at_level(logging.INFO, logger="baseplate.file_watcher"):
        for _ in range(5):
            assert watcher.get_data() == {"a": 1}
        replace(path, '{"a": 22}')
        assert watcher.get_data() == {"a": 22}
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(records) == 2, "one warning for the removal, not one per call"
    assert records[0][0] == logging.WARNING
    assert str(path) in records[0][1]
    assert "keeping the data last loaded" in records[0][1]
    assert records[1] == (logging.INFO, f"{path}: loaded again")
    assert parser.calls == 2


def test_file_removed_again_is_reported_again(path, parser, caplog):
    path.write_text("1", encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    watcher.get_data()
    with caplog.at_level(logging.WARNING, logger="baseplate.file_watcher"):
        for value in ("2", "3"):
            path.unlink()
            watcher.get_data()
            watcher.get_data()
            replace(path, value)
            assert watcher.get_data() == int(value)
    assert len(caplog.records) == 2


def test_bad_content_raises_until_good_content_arrives(path, parser):
    path.write_text("{not json", encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    for _ in range(5):
        with pytest.raises(WatchedFileNotAvailableError) as info:
            watcher.get_data()
        assert info.value.path == str(path)
        assert isinstance(info.value.inner, json.JSONDecodeError)
    assert parser.calls == 1  # the same bad version is not parsed on every call
    replace(path, '{"good": 1}')
    assert watcher.get_data() == {"good": 1}


def test_bad_version_after_a_good_one_keeps_the_data(path, parser, caplog):
    replace(path, '{"v": 1}')
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"v": 1}
    replace(path, "{truncated")
    with caplog.at_level(logging.DEBUG, logger="baseplate.file_watcher"):
        for _ in range(5):
            assert watcher.get_data() == {"v": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "could not be loaded, keeping the data last loaded" in warnings[0].getMessage()
    assert parser.calls == 2, "the bad version is not parsed again on every call"
    replace(path, '{"v": 3}')
    assert watcher.get_data() == {"v": 3}


def test_bad_version_then_removal_keeps_the_data(path, parser):
    replace(path, "[1]")
    watcher = FileWatcher(str(path), parser=parser)
    watcher.get_data()
    replace(path, "[")
    assert watcher.get_data() == [1]
    path.unlink()
    assert watcher.get_data() == [1]
    replace(path, "[2]")
    assert watcher.get_data() == [2]


def test_failed_change_is_retried_after_a_while(path, monkeypatch):
    path.write_text("7", encoding="utf-8")
    failures: list[Exception] = []

    def flaky(f):
        if failures:
            raise failures.pop()
        return int(f.read())

    watcher = FileWatcher(str(path), parser=flaky)
    assert watcher.get_data() == 7
    failures.append(OSError("too many open files"))
    replace(path, "8")
    assert watcher.get_data() == 7
    monkeypatch.setattr(file_watcher, "RETRY_FAILED_SECONDS", 0.0)
    assert watcher.get_data() == 8


def test_failed_version_is_retried_after_a_while(path, monkeypatch):
    path.write_text("7", encoding="utf-8")
    failures = [OSError("too many open files")]

    def flaky(f):
        if failures:
            raise failures.pop()
        return int(f.read())

    watcher = FileWatcher(str(path), parser=flaky)
    with pytest.raises(WatchedFileNotAvailableError):
        watcher.get_data()
    monkeypatch.setattr(file_watcher, "RETRY_FAILED_SECONDS", 0.0)
    assert watcher.get_data() == 7


def test_unreadable_file_raises(path, parser):
    path.mkdir()  # stat works, open does not
    watcher = FileWatcher(str(path), parser=parser)
    with pytest.raises(WatchedFileNotAvailableError) as info:
        watcher.get_data()
    assert isinstance(info.value.inner, IsADirectoryError)


def test_concurrent_callers_parse_a_change_once(path):
    calls = []

    def slow_parser(f):
        calls.append(1)
        time.sleep(0.1)
        return f.read()

    path.write_text("data", encoding="utf-8")
    watcher = FileWatcher(str(path), parser=slow_parser)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(watcher.get_data())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["data"] * 8
    assert len(calls) == 1


def test_text_mode_defaults_to_utf8_and_universal_newlines(path):
    path.write_bytes("caf\u00e9\r\nline\n".encode())
    watcher = FileWatcher(str(path), parser=lambda f: f.read())
    assert watcher.get_data() == "caf\u00e9\nline\n"


def test_encoding_option(path):
    path.write_bytes("caf\u00e9".encode("latin-1"))
    watcher = FileWatcher(str(path), parser=lambda f: f.read(), encoding="latin-1")
    assert watcher.get_data() == "caf\u00e9"


def test_undecodable_text_raises(path):
    path.write_bytes(b"\xff\xfe")
    watcher = FileWatcher(str(path), parser=lambda f: f.read())
    with pytest.raises(WatchedFileNotAvailableError) as info:
        watcher.get_data()
    assert isinstance(info.value.inner, UnicodeDecodeError)


def test_newline_option_keeps_line_endings(path):
    path.write_bytes(b"a\r\nb\n")
    watcher = FileWatcher(str(path), parser=lambda f: f.read(), newline="")
    assert watcher.get_data() == "a\r\nb\n"


def test_binary_mode_gives_bytes(path):
    path.write_bytes(b"\x00\xff\r\n")
    watcher = FileWatcher(str(path), parser=lambda f: f.read(), binary=True)
    assert watcher.get_data() == b"\x00\xff\r\n"


@pytest.mark.parametrize("option", [{"encoding": "utf-8"}, {"newline": ""}])
def test_text_options_are_refused_in_binary_mode(path, option):
    with pytest.raises(TypeError, match="binary mode"):
        FileWatcher(str(path), parser=lambda f: f.read(), binary=True, **option)


def test_accepts_path_objects_and_shows_the_path(path, parser):
    path.write_text("{}", encoding="utf-8")
    watcher = FileWatcher(path, parser=parser)
    assert watcher.path == str(path)
    assert repr(watcher) == f"FileWatcher({str(path)!r})"
    assert watcher.get_data() == {}
