"""The one INI reader (baseplate._ini): one key-case rule and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from baseplate._ini import ConfigFileError, read_config, section_options


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return str(path)


def test_keys_are_lower_cased_and_sections_keep_their_case(tmp_path: Path) -> None:
    path = write(tmp_path, "[App:Main]\nMetrics.Namespace = MyService\nretry_LIMIT = 3\n")
    parser = read_config(path)
    assert section_options(parser, path, "App:Main") == {
        "metrics.namespace": "MyService",
        "retry_limit": "3",
    }
    with pytest.raises(ConfigFileError, match=r"no \[app:main\] section"):
        section_options(parser, path, "app:main")


def test_values_are_literal_and_defaults_apply(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[DEFAULT]\nshared = yes\n\n[app:main]\nrate = 37.1%\nname = %(shared)s\n"
        "multi =\n    one,\n    two\n",
    )
    assert section_options(read_config(path), path, "app:main") == {
        "shared": "yes",
        "rate": "37.1%",
        "name": "%(shared)s",
        "multi": "\none,\ntwo",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("just text\n", "line 1: text before the first [section]"),
        ("[a]\nx = 1\n[a]\ny = 2\n", "line 3: [a] appears twice"),
        ("[a]\nKey = 1\nkey = 2\n", "line 3: 'key' appears twice in [a]"),
        ("[a]\nx = 1\n  \n[b\n", "line 4: cannot parse '[b\\n'"),
    ],
)
def test_bad_files_are_one_line_naming_the_file_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        read_config(path)
    assert str(info.value) == f"{path}: {problem}"
    assert (info.value.path, info.value.problem) == (path, problem)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigFileError, match=r"nope.ini: cannot read the file: No such file"):
        read_config(path)


def test_a_missing_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[app:main]\nx = 1\n")
    with pytest.raises(ConfigFileError) as info:
        section_options(read_config(path), path, "secret-fetcher")
    assert str(info.value) == f"{path}: no [secret-fetcher] section"
