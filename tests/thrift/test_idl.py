"""baseplate.thrift: the IDL, the checked-in generated modules and the edge payload."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer

import baseplate.thrift
from baseplate.integration.thrift import RequestContext
from baseplate.thrift import BaseplateService
from baseplate.thrift.codegen import generate
from baseplate.thrift.ttypes import (
    Device,
    Geolocation,
    Loid,
    OriginService,
    Request,
    RequestId,
    Session,
)
from tests import vectors

PACKAGE_DIR = Path(baseplate.thrift.__file__).parent
GENERATED = ["__init__.py", "BaseplateService.py", "constants.py", "ttypes.py"]


def test_idl_ships_beside_the_modules():
    text = (PACKAGE_DIR / "baseplate.thrift").read_text()
    assert "namespace py baseplate.thrift" in text
    assert "service BaseplateService" in text


def test_checked_in_modules_are_current(tmp_path):
    generate(PACKAGE_DIR / "baseplate.thrift", tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / "baseplate" / "thrift" / name).read_text()
        assert fresh == (PACKAGE_DIR / name).read_text(), (
            f"baseplate/thrift/{name} is stale: regenerate it with "
            "python -m baseplate.thrift.codegen baseplate/thrift/baseplate.thrift --out DIR"
        )


def spec(struct):
    """Field id -> (type, name) of a generated struct."""
    return {field[0]: (field[1], field[2]) for field in struct.thrift_spec if field}


def test_request_fields_follow_the_wire_format():
    assert spec(Request) == {
        1: (TType.STRUCT, "loid"),
        2: (TType.STRUCT, "session"),
        3: (TType.STRING, "authentication_token"),
        4: (TType.STRUCT, "device"),
        5: (TType.STRUCT, "origin_service"),
        6: (TType.STRUCT, "geolocation"),
        7: (TType.STRUCT, "request_id"),
    }
    assert spec(Loid) == {1: (TType.STRING, "id"), 2: (TType.I64, "created_ms")}
    assert spec(Session) == {1: (TType.STRING, "id")}
    assert spec(Device) == {1: (TType.STRING, "id")}
    assert spec(OriginService) == {1: (TType.STRING, "name")}
    assert spec(Geolocation) == {1: (TType.STRING, "country_code")}
    assert spec(RequestId) == {1: (TType.STRING, "readable_id")}


def request_from_fields(fields):
    """The Request the original's EdgeRequestContextFactory.new() writes."""
    return Request(
        loid=Loid(id=fields.get("loid_id"), created_ms=fields.get("loid_created_ms")),
        session=Session(id=fields.get("session_id")),
        authentication_token=fields.get("authentication_token"),
        device=Device(id=fields.get("device_id")),
        origin_service=OriginService(name=fields.get("origin_service_name")),
        geolocation=Geolocation(country_code=fields.get("country_code")),
        request_id=RequestId(readable_id=fields.get("request_id")),
    )


def serialize(struct):
    buffer = TMemoryBuffer()
    struct.write(TBinaryProtocol(buffer))
    return buffer.getvalue()


def deserialize(data):
    request = Request()
    request.read(TBinaryProtocol(TMemoryBuffer(data)))
    return request


EDGE_HEADERS = [
    pytest.param(case, id=case["desc"])
    for case in vectors.load("edge")["cases"]
    if case["kind"] == "new" and not case.get("expect_error")
]


@pytest.mark.parametrize("case", EDGE_HEADERS)
def test_request_bytes_match_the_vectors(case):
    expected = base64.b64decode(case["expected_header"])
    request = request_from_fields(case["fields"])
    assert serialize(request) == expected
    assert deserialize(expected) == request


def test_upstream_header_vector_decodes():
    (case,) = [
        case
        for case in vectors.load("edge")["cases"]
        if case["kind"] == "from_upstream" and case["desc"].startswith("header from another")
    ]
    request = deserialize(base64.b64decode(case["header"]))
    assert request.loid == Loid(id="t2_up", created_ms=42)
    assert request.session == Session(id="up")
    assert request.authentication_token.count(".") == 2


def test_baseplate_service_is_healthy_through_the_context_processor():
    class Health:
        def is_healthy(self, context):
            assert isinstance(context, RequestContext)
            return True

    request = TMemoryBuffer()
    client = BaseplateService.Client(TBinaryProtocol(request))
    client.send_is_healthy()
    reply = TMemoryBuffer()
    BaseplateService.ContextProcessor(Health()).process(
        TBinaryProtocol(TMemoryBuffer(request.getvalue())), TBinaryProtocol(reply)
    )
    client._iprot = TBinaryProtocol(TMemoryBuffer(reply.getvalue()))
    assert client.recv_is_healthy() is True
    assert issubclass(BaseplateService.ContextIface, object)
    assert BaseplateService.ContextIface().is_healthy(None) is None
