"""Generate Python code for a Thrift service, with Baseplate's context classes.

Runs the Apache Thrift compiler (``thrift``, Debian's ``thrift-compiler``) on
a service IDL, with Baseplate's own IDL directory on the include path so the
IDL can ``include "baseplate.thrift"``, and then adds two classes to every
generated service module:

``ContextIface``
    The service's interface with the request context as the first argument
    of every method, for handlers to subclass.
``ContextProcessor``
    The generated ``Processor``, but calling ``handler.method(context,
    *args)``, and instrumented by the event handler given to
    ``setEventHandler`` (see :mod:`baseplate.integration.thrift`).

From the command line::

    python -m baseplate.thrift.codegen my_service/my_service.thrift --out .

From a setuptools build hook, call :func:`build_thrift`; see the Thrift page
of the documentation for a ``setup.py`` example.

.. versionadded:: 0.31
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BASEPLATE_IDL_DIR", "ThriftCodegenError", "build_thrift", "generate"]

BASEPLATE_IDL_DIR = Path(__file__).resolve().parent
"""The directory holding ``baseplate.thrift``; always on the include path."""

_MARKER = "# -- Added by baseplate.thrift.codegen"
_PARENT_IFACE = re.compile(r"^class Iface\((?P<parent>[\w.]+)\.Iface\):", re.MULTILINE)


class ThriftCodegenError(Exception):
    """The Thrift compiler is missing or rejected the IDL.

    :ivar command: The command that failed, as a list of arguments.
    :ivar output: What the compiler wrote to stderr and stdout.
    """

    def __init__(self, message: str, command: Sequence[str] = (), output: str = "") -> None:
        super().__init__(message)
        self.command = list(command)
        self.output = output

    def __str__(self) -> str:
        text = str(self.args[0])
        if self.output:
            text += "\n" + self.output.strip()
        return text


def _compiler_path(compiler: str | None) -> str:
    name = compiler or os.environ.get("THRIFT_COMPILER") or "thrift"
    found = shutil.which(name)
    if found is None:
        raise ThriftCodegenError(
            f"the Thrift compiler {name!r} was not found: install it (Debian/Ubuntu: "
            "apt-get install thrift-compiler) or name it with --compiler or $THRIFT_COMPILER"
        )
    return found


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ThriftCodegenError(
            f"the Thrift compiler failed with exit status {result.returncode}: "
            + " ".join(command),
            command,
            result.stderr + result.stdout,
        )


def _option_value(options: str, key: str) -> str | None:
    for option in options.split(","):
        name, _, value = option.partition("=")
        if name.strip() == key:
            return value.strip().strip("'\"")
    return None


def _docstring(text: str, indent: str) -> str:
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.splitlines() or [""]
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    joined = "\n".join(f"{indent}{line}".rstrip() for line in lines)
    return f'{indent}"""\n{joined}\n{indent}"""\n'


def _render(service: dict[str, Any], module_source: str) -> str:
    """The Python source appended to one generated service module."""
    match = _PARENT_IFACE.search(module_source)
    base = f'getattr({match["parent"]}, "ContextIface", object)' if match else "object"
    service_doc = service.get("doc", "").strip()
    iface_doc = (service_doc + "\n\n" if service_doc else "") + (
        "Like Iface, but every method takes the request context first."
    )

    parts = [
        "\n\n",
        f"{_MARKER}: handler classes that take the request context. --\n",
        "\n\n",
        f"class ContextIface({base}):\n",
        _docstring(iface_doc, "    "),
    ]
    for function in service.get("functions", []):
        arguments = ", ".join(["self", "context"] + [a["name"] for a in function["arguments"]])
        parts.append(f"\n    def {function['name']}({arguments}):\n")
        if function.get("doc"):
            parts.append(_docstring(function["doc"], "        "))
        parts.append("        pass\n")
    parts.append(
        "\n\n"
        "class ContextProcessor(Processor):\n"
        '    """A Processor whose handler methods take the request context first.\n'
        "\n"
        "    Set a baseplate.integration.thrift.BaseplateProcessorEventHandler with\n"
        "    setEventHandler() to instrument every call.\n"
        '    """\n'
        "\n"
        "    def __init__(self, handler):\n"
        "        Processor.__init__(self, handler)\n"
        "        from baseplate.integration.thrift import ContextDispatcher\n"
        "\n"
        "        self._context_dispatcher = ContextDispatcher(self)\n"
        "\n"
        "    def setEventHandler(self, event_handler):\n"
        "        self._context_dispatcher.event_handler = event_handler\n"
        "\n"
        "    def process(self, iprot, oprot):\n"
        "        return self._context_dispatcher.process(iprot, oprot)\n"
    )
    return "".join(parts)


def generate(
    idl_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    include_dirs: Iterable[str | os.PathLike[str]] = (),
    options: str = "",
    compiler: str | None = None,
) -> list[Path]:
    """Generate the Python package for one IDL file and add the context classes.

    The package goes where the IDL's ``namespace py`` says, under
    ``out_dir`` (which is created if needed); without a namespace it is named
    after the IDL file. Included IDLs are not generated: generate each one
    (``baseplate.thrift`` is already part of Baseplate).

    :param idl_path: The ``.thrift`` file.
    :param out_dir: The directory the generated package tree starts in.
    :param include_dirs: More directories to search for ``include``\\ d IDLs;
        Baseplate's own directory is always searched last.
    :param options: Options for the compiler's Python generator, as in
        ``thrift --gen py:OPTIONS`` (e.g. ``"slots"``). The asynchronous
        flavours (``twisted``, ``tornado``) are not supported.
    :param compiler: The compiler executable; by default ``$THRIFT_COMPILER``
        or ``thrift`` on the ``PATH``.
    :returns: The service modules that were generated, one per service.
    :raises ThriftCodegenError: if the compiler is missing or fails.
    """
    idl = Path(idl_path)
    if not idl.is_file():
        raise ThriftCodegenError(f"no such IDL file: {idl}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thrift = _compiler_path(compiler)
    includes: list[str] = []
    for directory in [*include_dirs, BASEPLATE_IDL_DIR]:
        includes += ["-I", str(directory)]

    with tempfile.TemporaryDirectory(prefix="baseplate-codegen-") as scratch:
        _run([thrift, "--gen", "json", *includes, "-out", scratch, str(idl)])
        with (Path(scratch) / f"{idl.stem}.json").open(encoding="utf-8") as f:
            description: dict[str, Any] = json.load(f)

    # The compiler also drops an empty __init__.py into the output root,
    # which would make a source tree's root a package; keep it only if it
    # was there before.
    root_init = out / "__init__.py"
    root_init_existed = root_init.exists()
    generator = f"py:{options}" if options else "py"
    _run([thrift, "--gen", generator, *includes, "-out", str(out), str(idl)])
    if not root_init_existed and root_init.exists() and root_init.stat().st_size == 0:
        root_init.unlink()

    package = description.get("namespaces", {}).get("py") or idl.stem
    package = (_option_value(options, "package_prefix") or "") + package
    module_dir = out.joinpath(*package.split("."))
    modules = []
    for service in description.get("services", []):
        module = module_dir / f"{service['name']}.py"
        source = module.read_text(encoding="utf-8")
        if _MARKER not in source:
            module.write_text(source + _render(service, source), encoding="utf-8")
        modules.append(module)
    return modules


def build_thrift(
    idl_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    include_dirs: Iterable[str | os.PathLike[str]] = (),
    options: str = "",
    compiler: str | None = None,
) -> list[Path]:
    """Generate code for several IDL files; for use in a build hook.

    Call it from a setuptools command with the build directory as
    ``out_dir`` (``self.build_lib`` in a ``build_py`` subclass), so that
    wheels ship the generated code::

        from setuptools import setup
        from setuptools.command.build_py import build_py

        from baseplate.thrift.codegen import build_thrift


        class BuildPyWithThrift(build_py):
            def run(self):
                super().run()
                build_thrift(["my_service/my_service.thrift"], self.build_lib)


        setup(cmdclass={"build_py": BuildPyWithThrift})

    The directory of each IDL file is added to the include path. Arguments
    are those of :func:`generate`.

    :returns: Every service module generated.
    """
    paths = [idl_paths] if isinstance(idl_paths, str | os.PathLike) else list(idl_paths)
    extra = list(include_dirs)
    modules = []
    for path in paths:
        modules += generate(
            path,
            out_dir,
            include_dirs=[*extra, Path(path).resolve().parent],
            options=options,
            compiler=compiler,
        )
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m baseplate.thrift.codegen`` command."""
    parser = argparse.ArgumentParser(
        prog="python -m baseplate.thrift.codegen",
        description=(
            "Generate Python code for Thrift IDL files with the Apache Thrift compiler "
            "and add Baseplate's ContextIface and ContextProcessor to each service."
        ),
    )
    parser.add_argument("idl", nargs="+", type=Path, help="the .thrift files")
    parser.add_argument(
        "--out", type=Path, default=Path(), help="where the package tree starts (default: .)"
    )
    parser.add_argument(
        "-I",
        dest="include_dirs",
        action="append",
        default=[],
        type=Path,
        help="another directory to search for included IDL files (repeatable)",
    )
    parser.add_argument(
        "--options", default="", help="options of the compiler's py generator, e.g. slots"
    )
    parser.add_argument("--compiler", default=None, help="the Thrift compiler (default: thrift)")
    args = parser.parse_args(argv)
    try:
        modules = build_thrift(
            args.idl,
            args.out,
            include_dirs=args.include_dirs,
            options=args.options,
            compiler=args.compiler,
        )
    except ThriftCodegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for module in modules:
        print(module)
    return 0


if __name__ == "__main__":
    sys.exit(main())
