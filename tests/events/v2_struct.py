"""A Thrift struct shaped like the vectors' v2 event, without generated code.

Fields: 1: string action, 2: i64 client_timestamp, 3: bool flag,
4: double ratio, 5: i32 count. Unset fields are None and not written.
"""

from __future__ import annotations

from typing import Any

from thrift.Thrift import TType


class VectorEvent:
    thrift_spec = (
        None,
        (1, TType.STRING, "action", "UTF8", None),
        (2, TType.I64, "client_timestamp", None, None),
        (3, TType.BOOL, "flag", None, None),
        (4, TType.DOUBLE, "ratio", None, None),
        (5, TType.I32, "count", None, None),
    )

    def __init__(self, **fields: Any) -> None:
        for spec in self.thrift_spec[1:]:
            assert spec is not None
            setattr(self, spec[2], fields.pop(spec[2], None))
        assert not fields, f"unknown fields {sorted(fields)}"

    def write(self, oprot: Any) -> None:
        # The protocol's generic writer, which generated code falls back on too.
        oprot.writeStruct(self, self.thrift_spec)
