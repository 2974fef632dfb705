"""The one INI reader, for ``baseplate-serve``'s file and the sidecars' alike.

Every INI file Baseplate reads follows the same rules, so that a section
copied from one file to another means the same thing:

* Keys are lower-cased, as :mod:`configparser` does by default: ``Retry_Limit``
  and ``retry_limit`` are one key. This is the rule the original applied to
  every file it read -- ``baseplate-serve``'s ``[app:...]`` and
  ``[server:...]`` sections, and each sidecar's section, all went through a
  default ``RawConfigParser``. Section names keep their case.
* Interpolation is off, so values such as ``37.1%`` or ``%(x)s`` are taken
  literally (:func:`baseplate.config.Percent` needs no escaping).
* ``[DEFAULT]`` supplies keys to every section.
* A section, or a key within one section, given twice is an error rather than
  a silent override.

Every problem is a :class:`ConfigFileError` whose text is one line naming the
file and the line or section at fault.
"""

from __future__ import annotations

import configparser


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
    """Parse the INI file at ``path`` by the rules above.

    :raises ConfigFileError: The file cannot be read or is not valid INI.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=True)
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


def section_options(parser: configparser.ConfigParser, path: str, section: str) -> dict[str, str]:
    """The options of ``[section]``, ``[DEFAULT]``'s included.

    :param path: The file ``parser`` read, for the error message.
    :raises ConfigFileError: The file has no such section.
    """
    if not parser.has_section(section):
        raise ConfigFileError(path, f"no [{section}] section")
    return dict(parser.items(section))
