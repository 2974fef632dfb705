"""The INI file shared by ``baseplate-serve``, ``baseplate-script`` and ``baseplate-tshell``.

Sections are named ``[kind:name]`` (``[server:main]``, ``[app:main]``) as in
PasteDeploy files. Interpolation is off, so values such as ``37.1%`` are
taken literally. Every problem with the file is a :class:`ConfigFileError`
whose text is one line naming the file, the section and the option.
"""

from __future__ import annotations

import configparser
import importlib
from collections.abc import Callable
from typing import Any

FACTORY_OPTION = "factory"


class ConfigFileError(Exception):
    """The configuration file cannot be used as it is.

    :param path: The INI file.
    :param problem: One line saying what is wrong and where.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def read_config(path: str) -> configparser.ConfigParser:
    """Parse the INI file at ``path``."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys' case
    try:
        with open(path, encoding="utf-8") as config_file:
            parser.read_file(config_file)
    except OSError as exc:
        raise ConfigFileError(path, f"cannot read the file: {exc.strerror}") from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigFileError(path, f"line {exc.lineno}: text before the first [section]") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigFileError(path, f"line {exc.lineno}: [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigFileError(
            path, f"line {exc.lineno}: {exc.option!r} appears twice in [{exc.section}]"
        ) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ConfigFileError(path, f"line {lineno}: cannot parse {line.strip()}") from None
    except configparser.Error as exc:
        raise ConfigFileError(path, str(exc).splitlines()[0]) from None
    return parser


def get_section(
    parser: configparser.ConfigParser, path: str, kind: str, name: str
) -> dict[str, str]:
    """The options of the ``[kind:name]`` section, ``[DEFAULT]`` included."""
    section = f"{kind}:{name}"
    if not parser.has_section(section):
        raise ConfigFileError(path, f"no [{section}] section")
    return dict(parser.items(section))


def load_factory(
    spec: str | None, default_name: str, *, path: str, where: str
) -> Callable[..., Any]:
    """Import the callable a ``factory`` option (or another such option) names.

    ``spec`` is ``package.module:callable``, or just ``package.module`` for the
    module's ``default_name`` (if there is one). ``where`` names the option in
    error messages, such as ``[app:main] factory``. A module that cannot be found, a missing
    attribute or an object that is not callable is a :class:`ConfigFileError`;
    errors raised while the module itself runs propagate unchanged, since they
    are the application's, not the file's.
    """
    if spec is None or not spec.strip():
        raise ConfigFileError(path, f"{where}: required but missing")
    module_name, _, attribute = spec.strip().partition(":")
    attribute = attribute or default_name
    if not module_name or not attribute.isidentifier():
        raise ConfigFileError(path, f"{where}: expected 'module:callable', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the module exists but one of its own imports failed
        raise ConfigFileError(path, f"{where}: no module named {missing!r}") from None
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise ConfigFileError(
            path, f"{where}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not callable(factory):
        raise ConfigFileError(path, f"{where}: {module_name}:{attribute} is not callable")
    return factory  # type: ignore[no-any-return]


def factory_options(section: dict[str, str]) -> dict[str, str]:
    """A section's options without its ``factory``: what a factory receives."""
    return {key: value for key, value in section.items() if key != FACTORY_OPTION}
