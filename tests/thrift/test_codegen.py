"""Code generation: the Apache compiler's output plus ContextIface and ContextProcessor."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from baseplate.core import Baseplate
from baseplate.integration.thrift import (
    BaseplateProcessorEventHandler,
    RequestContext,
    baseplateify_processor,
    make_context_processor,
)
from baseplate.testing import RecordingObserver
from baseplate.thrift import BaseplateService
from baseplate.thrift.codegen import ThriftCodegenError, build_thrift, generate
from tests._helpers import run_python

ROOT = Path(__file__).resolve().parents[2]

IDL = """
include "baseplate.thrift"

namespace py {package}

exception Refused {{
    1: string reason;
}}

/** A service for the tests. */
service Greeter extends baseplate.BaseplateService {{
    /** Greet someone. */
    string greet(1: string name, 2: i32 times) throws (1: Refused refused),
    void explode(),
    oneway void poke(1: string note),
}}

service Plain {{
    i32 add(1: i32 a, 2: i32 b),
    // Names that must not collide with the dispatcher's own attributes.
    string context(),
    string result(),
}}
"""


def write_idl(directory: Path) -> tuple[Path, str]:
    package = f"codegen_{uuid.uuid4().hex[:12]}.svc"
    idl = directory / "greeter.thrift"
    idl.write_text(IDL.format(package=package))
    return idl, package


@pytest.fixture
def import_generated(monkeypatch):
    """Import generated modules from a directory, and forget them afterwards."""
    imported = []

    def do_import(out_dir: Path, module: str):
        monkeypatch.syspath_prepend(str(out_dir))
        imported.append(module.split(".", maxsplit=1)[0])
        return importlib.import_module(module)

    yield do_import
    for top in imported:
        for name in [name for name in sys.modules if name.split(".")[0] == top]:
            del sys.modules[name]


@pytest.fixture
def greeter(tmp_path, import_generated):
    idl, package = write_idl(tmp_path)
    out = tmp_path / "out"
    modules = generate(idl, out)
    assert sorted(module.name for module in modules) == ["Greeter.py", "Plain.py"]
    return import_generated(out, f"{package}.Greeter")


class Handler:
    def __init__(self):
        self.contexts = []
        self.pokes = []

    def is_healthy(self, context):
        self.contexts.append(context)
        return True

    def greet(self, context, name, times):
        self.contexts.append(context)
        if name == "nobody":
            raise self.refused("no one to greet")
        return " ".join([f"hello {name}"] * times)

    def explode(self, context):
        self.contexts.append(context)
        raise RuntimeError("boom")

    def poke(self, context, note):
        self.contexts.append(context)
        self.pokes.append(note)


def call(module, processor, method, *args):
    """Send one call through ``processor`` in memory and return what the client reads."""
    request = TMemoryBuffer()
    client = module.Client(TBinaryProtocol(request))
    getattr(client, f"send_{method}")(*args)
    reply = TMemoryBuffer()
    processor.process(TBinaryProtocol(TMemoryBuffer(request.getvalue())), TBinaryProtocol(reply))
    if not reply.getvalue():
        return None
    client._iprot = TBinaryProtocol(TMemoryBuffer(reply.getvalue()))
    return getattr(client, f"recv_{method}")()


def test_generated_module_keeps_the_apache_classes(greeter):
    assert {"Iface", "Client", "Processor"} <= set(vars(greeter))
    assert issubclass(greeter.Iface, BaseplateService.Iface)


def test_context_iface_takes_the_context_first(greeter):
    import inspect

    assert list(inspect.signature(greeter.ContextIface.greet).parameters) == [
        "self",
        "context",
        "name",
        "times",
    ]
    assert greeter.ContextIface.greet.__doc__.strip() == "Greet someone."
    assert greeter.ContextIface.__doc__.startswith("\n    A service for the tests.")
    assert issubclass(greeter.ContextIface, BaseplateService.ContextIface)


def test_context_processor_passes_a_context(greeter):
    handler = Handler()
    processor = greeter.ContextProcessor(handler)
    handler.refused = greeter.Refused
    assert call(greeter, processor, "greet", "you", 2) == "hello you hello you"
    assert isinstance(handler.contexts[0], RequestContext)
    assert call(greeter, processor, "is_healthy") is True
    assert handler.contexts[1] is not handler.contexts[0]


def test_context_processor_with_the_event_handler(greeter):
    baseplate = Baseplate()
    recorder = RecordingObserver()
    baseplate.register(recorder)
    handler = Handler()
    handler.refused = greeter.Refused
    processor = greeter.ContextProcessor(handler)
    processor.setEventHandler(BaseplateProcessorEventHandler(logging.getLogger("test"), baseplate))
    assert call(greeter, processor, "greet", "you", 1) == "hello you"
    (context,) = handler.contexts
    assert context.trace.name == "greet"
    assert recorder.events[0] == ("greet", "on_server_span_created")
    assert recorder.events[-1] == ("greet", "on_finish", None)


def test_declared_exception_reaches_the_caller(greeter):
    handler = Handler()
    handler.refused = greeter.Refused
    processor = greeter.ContextProcessor(handler)
    with pytest.raises(greeter.Refused) as caught:
        call(greeter, processor, "greet", "nobody", 1)
    assert caught.value.reason == "no one to greet"


def test_undeclared_exception_is_an_internal_error(greeter, caplog):
    processor = greeter.ContextProcessor(Handler())
    with pytest.raises(TApplicationException) as caught:
        call(greeter, processor, "explode")
    assert caught.value.type == TApplicationException.INTERNAL_ERROR
    # Logged once, by the dispatcher's default hooks (not by the generated code).
    (record,) = caplog.records
    assert record.name == "baseplate.integration.thrift"
    assert record.exc_info[1].args == ("boom",)


def test_handler_application_exception_is_passed_on(greeter, caplog):
    class Refusing(Handler):
        def explode(self, context):
            raise TApplicationException(TApplicationException.UNSUPPORTED_CLIENT_TYPE, "nope")

    with pytest.raises(TApplicationException) as caught:
        call(greeter, greeter.ContextProcessor(Refusing()), "explode")
    assert caught.value.type == TApplicationException.UNSUPPORTED_CLIENT_TYPE
    assert caught.value.message == "nope"


def test_oneway_call_runs_and_writes_nothing(greeter):
    handler = Handler()
    processor = greeter.ContextProcessor(handler)
    assert call(greeter, processor, "poke", "psst") is None
    assert handler.pokes == ["psst"]


def test_unknown_method_is_reported(greeter):
    request = TMemoryBuffer()
    protocol = TBinaryProtocol(request)
    protocol.writeMessageBegin("nonesuch", TMessageType.CALL, 7)
    protocol.writeStructBegin("args")
    protocol.writeFieldStop()
    protocol.writeStructEnd()
    protocol.writeMessageEnd()
    reply = TMemoryBuffer()
    greeter.ContextProcessor(Handler()).process(
        TBinaryProtocol(TMemoryBuffer(request.getvalue())), TBinaryProtocol(reply)
    )
    answer = TBinaryProtocol(TMemoryBuffer(reply.getvalue()))
    assert answer.readMessageBegin() == ("nonesuch", TMessageType.EXCEPTION, 7)
    error = TApplicationException()
    error.read(answer)
    assert error.type == TApplicationException.UNKNOWN_METHOD


def test_service_without_parent(tmp_path, import_generated):
    idl, package = write_idl(tmp_path)
    generate(idl, tmp_path / "out")
    plain = import_generated(tmp_path / "out", f"{package}.Plain")
    assert plain.ContextIface.__bases__ == (object,)

    class Adder:
        def add(self, context, a, b):
            assert isinstance(context, RequestContext)
            return a + b

        def context(self, context):
            return "context"

        def result(self, context):
            return "result"

    processor = plain.ContextProcessor(Adder())
    assert call(plain, processor, "add", 2, 3) == 5
    assert call(plain, processor, "context") == "context"
    assert call(plain, processor, "result") == "result"


def test_plain_apache_processor_instrumented_at_run_time(tmp_path, import_generated):
    idl, package = write_idl(tmp_path)
    out = tmp_path / "plain"
    out.mkdir()
    subprocess.run(
        ["thrift", "--gen", "py", "-I", str(ROOT / "baseplate" / "thrift"), "-out", str(out), idl],
        check=True,
    )
    greeter = import_generated(out, f"{package}.Greeter")
    assert not hasattr(greeter, "ContextProcessor")
    handler = Handler()
    handler.refused = greeter.Refused

    processor = make_context_processor(greeter.Processor, handler)
    assert isinstance(processor, greeter.Processor)
    assert call(greeter, processor, "greet", "x", 1) == "hello x"
    assert isinstance(handler.contexts[-1], RequestContext)
    assert type(make_context_processor(greeter.Processor, handler)) is type(processor)

    baseplate = Baseplate()
    recorder = RecordingObserver()
    baseplate.register(recorder)
    instrumented = baseplateify_processor(
        greeter.Processor(handler), logging.getLogger("test"), baseplate
    )
    assert call(greeter, instrumented, "is_healthy") is True
    assert handler.contexts[-1].trace.name == "is_healthy"
    assert recorder.events[-1] == ("is_healthy", "on_finish", None)


def test_generation_is_idempotent_and_leaves_no_root_package(tmp_path):
    idl, package = write_idl(tmp_path)
    out = tmp_path / "out"
    generate(idl, out)
    (module,) = [m for m in generate(idl, out) if m.name == "Greeter.py"]
    assert module.read_text().count("class ContextProcessor(") == 1
    assert not (out / "__init__.py").exists()
    assert (out / package.split(".")[0] / "__init__.py").exists()


def test_existing_root_init_is_kept(tmp_path):
    idl, _ = write_idl(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "__init__.py").write_text("# mine\n")
    generate(idl, out)
    assert (out / "__init__.py").read_text() == "# mine\n"


def test_build_thrift_searches_each_idl_directory(tmp_path, import_generated):
    shared = tmp_path / "idl"
    shared.mkdir()
    (shared / "common.thrift").write_text(
        "namespace py shared_types_x\nstruct Point { 1: i32 x; 2: i32 y; }\n"
    )
    package = f"build_{uuid.uuid4().hex[:12]}"
    (shared / "geo.thrift").write_text(
        f'include "common.thrift"\nnamespace py {package}\n'
        "service Geo { common.Point origin() }\n"
    )
    out = tmp_path / "build"
    modules = build_thrift([shared / "common.thrift", shared / "geo.thrift"], out)
    assert [module.name for module in modules] == ["Geo.py"]
    geo = import_generated(out, f"{package}.Geo")
    assert hasattr(geo, "ContextProcessor")


def test_options_are_passed_to_the_generator(tmp_path, import_generated):
    idl, package = write_idl(tmp_path)
    generate(idl, tmp_path / "out", options="slots")
    greeter = import_generated(tmp_path / "out", f"{package}.Greeter")
    assert "__slots__" in vars(greeter.greet_args)


def test_command_line(tmp_path):
    idl, package = write_idl(tmp_path)
    out = tmp_path / "cli"
    result = run_python("-m", "baseplate.thrift.codegen", str(idl), "--out", str(out), cwd=ROOT)
    assert result.stdout.split() == [
        str(out / Path(*package.split(".")) / "Greeter.py"),
        str(out / Path(*package.split(".")) / "Plain.py"),
    ]


def test_command_line_reports_compiler_errors(tmp_path):
    idl = tmp_path / "broken.thrift"
    idl.write_text("service Broken { nonsense }\n")
    result = subprocess.run(
        [sys.executable, "-m", "baseplate.thrift.codegen", str(idl), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the Thrift compiler failed")


def test_missing_compiler_gives_advice(tmp_path):
    idl, _ = write_idl(tmp_path)
    with pytest.raises(ThriftCodegenError, match="thrift-compiler"):
        generate(idl, tmp_path / "out", compiler="no-such-thrift-compiler")


def test_missing_idl(tmp_path):
    with pytest.raises(ThriftCodegenError, match="no such IDL file"):
        generate(tmp_path / "absent.thrift", tmp_path / "out")
