"""The INI file shared by ``baseplate-serve``, ``baseplate-script`` and ``baseplate-tshell``.

Sections are named ``[kind:name]`` (``[server:main]``, ``[app:main]``) as in
PasteDeploy files. The file is read by :mod:`baseplate._ini`, the reader every
Baseplate process uses (keys lower-cased, no interpolation). Every problem with
the file is a :class:`ConfigFileError` whose text is one line naming the file,
the section and the option.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from typing import Any

from baseplate._importer import ImportNameError, import_object
from baseplate._ini import ConfigFileError, read_config, section_options

__all__ = [
    "FACTORY_OPTION",
    "ConfigFileError",
    "SectionOptions",
    "factory_options",
    "get_section",
    "load_factory",
    "read_config",
]

FACTORY_OPTION = "factory"


class SectionOptions(dict[str, str]):
    """The options of a section, remembering which came from ``[DEFAULT]`` alone.

    A factory receives them as a plain dict; the servers use ``inherited`` to
    warn about unknown options the section itself sets, not about the keys
    ``[DEFAULT]`` adds to every section.
    """

    def __init__(self, options: dict[str, str], inherited: frozenset[str]) -> None:
        super().__init__(options)
        self.inherited = inherited


def get_section(
    parser: configparser.ConfigParser, path: str, kind: str, name: str
) -> SectionOptions:
    """The options of the ``[kind:name]`` section, ``[DEFAULT]`` included."""
    options = section_options(parser, path, f"{kind}:{name}")
    defaults = parser.defaults()
    # A section that repeats a [DEFAULT] option's value is taken to inherit it.
    inherited = frozenset(key for key, value in defaults.items() if options.get(key) == value)
    return SectionOptions(options, inherited)


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
    try:
        factory: Callable[..., Any] = import_object(spec, default_name, must_be_callable=True)
    except ImportNameError as exc:
        raise ConfigFileError(path, f"{where}: {exc}") from None
    return factory


def factory_options(section: dict[str, str]) -> dict[str, str]:
    """A section's options without its ``factory``: what a factory receives.

    The options of a :class:`SectionOptions` stay one, with their ``inherited`` keys.
    """
    options = {key: value for key, value in section.items() if key != FACTORY_OPTION}
    if isinstance(section, SectionOptions):
        return SectionOptions(options, section.inherited)
    return options
