"""The one dotted-name importer (baseplate._importer), in every form its callers use."""

from __future__ import annotations

import os.path
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from baseplate._importer import ImportNameError, import_object


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module ``importer_app`` with a factory, a constant and a default-named callable."""
    (tmp_path / "importer_app.py").write_text(
        "VERSION = 3\n\ndef make_app(config):\n    return config\n\nrun = make_app\n"
    )
    (tmp_path / "importer_broken.py").write_text("import importer_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "importer_app"
    for name in ("importer_app", "importer_broken"):
        sys.modules.pop(name, None)


def import_error(text: str, *args: object, **kwargs: object) -> str:
    """The one-line message importing ``text`` fails with."""
    with pytest.raises(ImportNameError) as info:
        import_object(text, *args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_colon_form(app_module: str) -> None:
    assert import_object("os.path:join") is os.path.join
    assert import_object(f" {app_module}:VERSION ") == 3


def test_dotted_form_without_a_default_name() -> None:
    assert import_object("os.path.join") is os.path.join


def test_module_alone_gives_the_default_name(app_module: str) -> None:
    make_app = import_object(app_module, "make_app")
    assert make_app is import_object(f"{app_module}:make_app")
    assert import_object(f"{app_module}:", "make_app") is make_app
    assert import_object(f"{app_module}:run", "make_app") is make_app


def test_with_a_default_name_dots_are_all_module(app_module: str) -> None:
    assert import_error(f"{app_module}.run", "make_app") == "no module named 'importer_app.run'"


@pytest.mark.parametrize(
    ("text", "default_name", "message"),
    [
        ("printer", "", "expected 'module:name', not 'printer'"),
        ("printer", None, "expected 'module:name', not 'printer'"),
        ("mod:a b", None, "expected 'module:name', not 'mod:a b'"),
        (":name", None, "expected 'module:name', not ':name'"),
        ("my-app:make", None, "expected 'module:name', not 'my-app:make'"),
        ("", "make_app", "expected 'module:name', not ''"),
    ],
)
def test_malformed_names_are_one_line_naming_the_text(
    text: str, default_name: str | None, message: str
) -> None:
    with pytest.raises(ImportNameError) as info:
        import_object(text, default_name)
    assert str(info.value) == message
    assert info.value.text == text


def test_callables_are_asked_for_by_name(app_module: str) -> None:
    assert import_error("x", "", must_be_callable=True) == "expected 'module:callable', not 'x'"
    assert (
        import_error(f"{app_module}:VERSION", must_be_callable=True)
        == "importer_app:VERSION is not callable"
    )


def test_missing_module_and_attribute_are_named() -> None:
    assert import_error("importer_nope.thing") == "no module named 'importer_nope'"
    assert import_error("os.nope:thing") == "no module named 'os.nope'"
    assert import_error("os.path.nope") == "module 'os.path' has no attribute 'nope'"


def test_errors_are_value_errors_for_config_parsers() -> None:
    with pytest.raises(ValueError):
        import_object("importer_nope.thing")


def test_a_modules_own_failed_import_propagates(app_module: str) -> None:
    with pytest.raises(ModuleNotFoundError, match="importer_no_such_dependency"):
        import_object("importer_broken:anything")
