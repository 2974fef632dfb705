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


def test_constructor_waits_for_the_file_to_appear(path, parser):
    def write_later():
        time.sleep(0.2)
        replace(path, '{"late": true}')

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        watcher = FileWatcher(str(path), parser=parser, timeout=10)
        assert parser.calls == 1  # loaded during construction
        assert watcher.get_data() == {"late": True}
        assert parser.calls == 1
    finally:
        writer.join()


def test_constructor_waits_for_the_file_to_become_parsable(path, parser):
    path.write_text("{incomplete", encoding="utf-8")

    def write_later():
        time.sleep(0.2)
        replace(path, '{"complete": true}')

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        watcher = FileWatcher(str(path), parser=parser, timeout=10)
        assert watcher.get_data() == {"complete": True}
    finally:
        writer.join()


def test_timeout_runs_out_and_get_data_raises_until_the_file_appears(path, parser, caplog):
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="baseplate.file_watcher"):
        watcher = FileWatcher(str(path), parser=parser, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert "not available after 0.2 seconds" in caplog.text
    with pytest.raises(WatchedFileNotAvailableError):
        watcher.get_data()
    path.write_text("1", encoding="utf-8")
    assert watcher.get_data() == 1


def test_zero_timeout_tries_once(path, parser):
    path.write_text("5", encoding="utf-8")
    FileWatcher(str(path), parser=parser, timeout=0)
    assert parser.calls == 1
    path.unlink()
    FileWatcher(str(path), parser=parser, timeout=0)


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_bad_timeout_is_rejected(path, parser, timeout):
    with pytest.raises(ValueError, match="timeout"):
        FileWatcher(str(path), parser=parser, timeout=timeout)


def test_file_removed_after_loading_raises_then_recovers(path, parser):
    path.write_text('{"a": 1}', encoding="utf-8")
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"a": 1}
    path.unlink()
    with pytest.raises(WatchedFileNotAvailableError) as info:
        watcher.get_data()
    assert isinstance(info.value.inner, FileNotFoundError)
    replace(path, '{"a": 22}')
    assert watcher.get_data() == {"a": 22}


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


def test_bad_version_after_a_good_one_raises_with_the_path(path, parser, caplog):
    replace(path, '{"v": 1}')
    watcher = FileWatcher(str(path), parser=parser)
    assert watcher.get_data() == {"v": 1}
    replace(path, "{truncated")
    with caplog.at_level(logging.DEBUG, logger="baseplate.file_watcher"):
        for _ in range(5):
            with pytest.raises(WatchedFileNotAvailableError) as info:
                watcher.get_data()
            assert info.value.path == str(path)
            assert isinstance(info.value.inner, ValueError)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not be loaded" in warnings[0].getMessage()
    assert parser.calls == 2, "the bad version is not parsed again on every call"
    replace(path, '{"v": 3}')
    assert watcher.get_data() == {"v": 3}


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
