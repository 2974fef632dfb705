"""A stand-in for Cassandra that speaks the CQL native protocol, version 4.

No real Cassandra can run here, so the tests of ``baseplate.context.cassandra``
point the real cassandra-driver at this server on 127.0.0.1. It answers what
the driver sends on its own (OPTIONS, STARTUP, REGISTER, the control
connection's ``system.local`` and ``system.peers`` queries; ``system.peers_v2``
is an unconfigured table, as in Cassandra 3, so the driver falls back to
``system.peers``) and a small CQL subset over in-memory tables of one
keyspace:

* ``USE <keyspace>``;
* ``SELECT <columns or *> FROM [<keyspace>.]<table> [WHERE <column> = <term>] [LIMIT n]``;
* ``INSERT INTO [<keyspace>.]<table> (<columns>) VALUES (<terms>)``, which
  replaces the row with the same first column (the primary key);

where a term is a string literal, an integer, ``null`` or a ``?`` bind
marker. Each may be sent as a QUERY, or PREPAREd and EXECUTEd. A table that
does not exist is an Invalid error (``InvalidRequest`` in the driver), and
anything else a Syntax error (``SyntaxException``), so tests can make the
driver fail on demand; :attr:`CQLStandIn.answering` holds the answers, so
tests can see a query in flight. Column types: ``varchar``, ``int``, ``uuid``, ``inet``.

Frames are ``version | flags | stream | opcode | length`` followed by the
body; compression is never offered, so no frame is compressed. Each client
connection is served by a thread; :meth:`CQLStandIn.stop` closes the
listener and every connection, and :meth:`CQLStandIn.start` listens again on
the same port, so tests can take Cassandra away and bring it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

VERSION = 4
#: The longest a held answer waits (see :attr:`CQLStandIn.answering`), in seconds.
HOLD_LIMIT = 10
_HEADER = struct.Struct(">BBhBi")
_RESPONSE = 0x80

# Opcodes
ERROR, STARTUP, READY, OPTIONS, SUPPORTED = 0x00, 0x01, 0x02, 0x05, 0x06
QUERY, RESULT, PREPARE, EXECUTE, REGISTER = 0x07, 0x08, 0x09, 0x0A, 0x0B

# Error codes
SERVER_ERROR, PROTOCOL_ERROR, SYNTAX_ERROR = 0x0000, 0x000A, 0x2000
INVALID, UNPREPARED = 0x2200, 0x2500

# Result kinds, and their metadata flags
VOID, ROWS, SET_KEYSPACE, PREPARED = 0x0001, 0x0002, 0x0003, 0x0004
_GLOBAL_TABLES_SPEC, _NO_METADATA = 0x0001, 0x0004

# Query parameter flags
_WITH_VALUES, _SKIP_METADATA, _WITH_NAMES = 0x01, 0x02, 0x40


def _pack_int(value: int) -> bytes:
    return struct.pack(">i", value)


def _pack_short(value: int) -> bytes:
    return struct.pack(">H", value)


def _pack_string(text: str) -> bytes:
    data = text.encode()
    return _pack_short(len(data)) + data


def _pack_bytes(data: bytes | None) -> bytes:
    return _pack_int(-1) if data is None else _pack_int(len(data)) + data


def _pack_string_multimap(mapping: dict[str, list[str]]) -> bytes:
    parts = [_pack_short(len(mapping))]
    for key, values in mapping.items():
        parts.append(_pack_string(key) + _pack_short(len(values)))
        parts.extend(_pack_string(value) for value in values)
    return b"".join(parts)


@dataclass(frozen=True)
class _Type:
    option: int
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


TYPES = {
    "varchar": _Type(0x000D, str.encode, bytes.decode),
    "int": _Type(0x0009, _pack_int, lambda data: struct.unpack(">i", data)[0]),
    "uuid": _Type(0x000C, lambda value: value.bytes, lambda data: uuid.UUID(bytes=data)),
    "inet": _Type(
        0x0010,
        lambda value: ipaddress.ip_address(value).packed,
        lambda data: str(ipaddress.ip_address(data)),
    ),
}


class CQLError(Exception):
    """An error the stand-in answers with: the code, the message and any extra fields."""

    def __init__(self, code: int, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.body = _pack_int(code) + _pack_string(message) + extra


class _Body:
    """Reads the notations of the protocol ([short], [string], [bytes] ...) from a body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, size: int) -> bytes:
        chunk = self.data[self.position : self.position + size]
        if size < 0 or len(chunk) < size:
            raise CQLError(PROTOCOL_ERROR, "truncated frame body")
        self.position += size
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def int(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def string(self) -> str:
        return self.take(self.short()).decode()

    def long_string(self) -> str:
        return self.take(self.int()).decode()

    def bytes(self) -> bytes | None:
        size = self.int()
        return None if size < 0 else self.take(size)  # -1 null, -2 "not set"

    def short_bytes(self) -> bytes:
        return self.take(self.short())

    def string_list(self) -> list[str]:
        return [self.string() for _ in range(self.short())]

    def string_map(self) -> dict[str, str]:
        return {self.string(): self.string() for _ in range(self.short())}

    def query_values(self) -> tuple[list[bytes | None], bool]:
        """The bound values of <query_parameters>, and whether to skip the result metadata."""
        self.short()  # consistency
        flags = self.byte()
        values = []
        if flags & _WITH_VALUES:
            for _ in range(self.short()):
                if flags & _WITH_NAMES:
                    self.string()
                values.append(self.bytes())
        return values, bool(flags & _SKIP_METADATA)


@dataclass
class Table:
    """An in-memory table: its columns in order (name to type; the first is the key) and rows."""

    keyspace: str
    name: str
    columns: dict[str, str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def column_specs(self, names: list[str]) -> bytes:
        """Result metadata for ``names``: one global table spec, then each column."""
        specs = [_pack_string(self.keyspace), _pack_string(self.name)]
        specs.extend(
            _pack_string(name) + _pack_short(TYPES[self.columns[name]].option) for name in names
        )
        return b"".join(specs)

    def encode(self, row: dict[str, Any], name: str) -> bytes:
        """One value of a row as a [bytes]."""
        value = row.get(name)
        return _pack_bytes(None if value is None else TYPES[self.columns[name]].encode(value))

    def upsert(self, row: dict[str, Any]) -> None:
        """Insert ``row``, replacing the one with the same key (the first column)."""
        key = next(iter(self.columns))
        self.rows[:] = [old for old in self.rows if old.get(key) != row.get(key)]
        self.rows.append(row)

    def check(self, name: str) -> str:
        if name not in self.columns:
            raise CQLError(INVALID, f"Undefined column name {name}")
        return name


_NAME = r'"?(\w+)"?'
_TABLE = rf"(?:{_NAME}\.)?{_NAME}"
_TERM = r"\?|'(?:[^']|'')*'|-?\d+|null"
_SELECT = re.compile(
    rf"SELECT\s+(?P<columns>.+?)\s+FROM\s+{_TABLE}"
    rf"(?:\s+WHERE\s+{_NAME}\s*=\s*(?P<term>{_TERM}))?(?:\s+LIMIT\s+\d+)?\s*;?",
    re.IGNORECASE | re.DOTALL,
)
_INSERT = re.compile(
    rf"INSERT\s+INTO\s+{_TABLE}\s*\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<terms>[^)]*)\)\s*;?",
    re.IGNORECASE | re.DOTALL,
)
_USE = re.compile(rf"USE\s+{_NAME}\s*;?", re.IGNORECASE)


def _names(text: str) -> list[str]:
    return [name.strip().strip('"') for name in text.split(",")]


@dataclass
class _Statement:
    """A parsed statement: what it does, on which table, and its (column, term) pairs."""

    kind: str
    table: Table | None
    columns: list[str]
    terms: list[tuple[str, str]]
    keyspace: str = ""

    def markers(self) -> list[str]:
        """The columns of the ``?`` bind markers, in order."""
        return [column for column, term in self.terms if term == "?"]


class CQLStandIn:
    """The server. ``tables`` are the keyspace's tables; ``port`` 0 picks a free port."""

    def __init__(self, keyspace: str, tables: list[Table], port: int = 0) -> None:
        self.keyspace = keyspace
        self.tables = {table.name: table for table in tables}
        self.port = port
        self.host_id = uuid.uuid4()
        self.schema_version = uuid.uuid4()
        #: ``(opcode name, CQL)`` of every QUERY, PREPARE and EXECUTE received.
        self.received: list[tuple[str, str]] = []
        #: Clear it to hold the answers to statements on the keyspace's tables
        #: (up to :data:`HOLD_LIMIT` seconds) until it is set again.
        self.answering = threading.Event()
        self.answering.set()
        self._prepared: dict[bytes, str] = {}
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop, self._listener)

    def stop(self) -> None:
        """Close the listener and every open connection; wait for their threads.

        Held answers are released first (see :attr:`answering`).
        """
        self.answering.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        assert not self._threads, "stand-in threads did not stop"

    def user_queries(self) -> list[tuple[str, str]]:
        """What was received, without what the driver sends on its own (``system``, ``USE``)."""
        return [
            (op, cql)
            for op, cql in self.received
            if "system." not in cql and not _USE.fullmatch(cql.strip())
        ]

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="cql-standin")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._connections.add(connection)
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        try:
            for version, stream, opcode, body in _frames(connection):
                response_opcode, response = self._respond(version, opcode, body)
                header = _HEADER.pack(
                    _RESPONSE | version, 0, stream, response_opcode, len(response)
                )
                connection.sendall(header + response)
        except OSError:
            pass  # the client went away, or the stand-in stopped
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    # -- requests ------------------------------------------------------------------

    def _respond(self, version: int, opcode: int, data: bytes) -> tuple[int, bytes]:
        try:
            if version != VERSION:
                raise CQLError(
                    PROTOCOL_ERROR,
                    f"Invalid or unsupported protocol version ({version}); "
                    f"supported versions are ({VERSION}/v{VERSION})",
                )
            return self._answer(opcode, _Body(data))
        except CQLError as error:
            return ERROR, error.body

    def _answer(self, opcode: int, body: _Body) -> tuple[int, bytes]:
        if opcode == OPTIONS:
            supported = {"CQL_VERSION": ["3.4.4"], "COMPRESSION": [], "PROTOCOL_VERSIONS": ["4/v4"]}
            return SUPPORTED, _pack_string_multimap(supported)
        if opcode == STARTUP:
            if "CQL_VERSION" not in body.string_map():
                raise CQLError(PROTOCOL_ERROR, "CQL_VERSION is mandatory")
            return READY, b""
        if opcode == REGISTER:
            body.string_list()
            return READY, b""
        if opcode == QUERY:
            query = body.long_string()
            self.received.append(("QUERY", query))
            return RESULT, self._run(query, *body.query_values())
        if opcode == PREPARE:
            query = body.long_string()
            self.received.append(("PREPARE", query))
            return RESULT, self._prepare(query)
        if opcode == EXECUTE:
            statement_id = body.short_bytes()
            query = self._prepared.get(statement_id)
            if query is None:
                raise CQLError(UNPREPARED, "unknown prepared statement", _pack_short(0))
            self.received.append(("EXECUTE", query))
            return RESULT, self._run(query, *body.query_values())
        raise CQLError(PROTOCOL_ERROR, f"opcode {opcode:#x} is not supported by the stand-in")

    def _prepare(self, query: str) -> bytes:
        statement = self._parse(query)
        if statement.table is None:
            raise CQLError(SYNTAX_ERROR, "only SELECT and INSERT can be prepared here")
        statement_id = hashlib.md5(query.encode()).digest()  # as Cassandra: a hash of the text
        self._prepared[statement_id] = query
        markers = statement.markers()
        variables = _pack_int(_GLOBAL_TABLES_SPEC) + _pack_int(len(markers)) + _pack_int(0)
        variables += statement.table.column_specs(markers)
        return (
            _pack_int(PREPARED)
            + _pack_short(len(statement_id))
            + statement_id
            + variables
            + (self._result_metadata(statement, skip=False))
        )

    def _result_metadata(self, statement: _Statement, skip: bool) -> bytes:
        if statement.kind != "select" or statement.table is None:
            return _pack_int(_NO_METADATA) + _pack_int(0)
        count = _pack_int(len(statement.columns))
        if skip:
            return _pack_int(_NO_METADATA) + count
        return (
            _pack_int(_GLOBAL_TABLES_SPEC) + count + statement.table.column_specs(statement.columns)
        )

    def _run(self, query: str, values: list[bytes | None], skip_metadata: bool) -> bytes:
        statement = self._parse(query)
        if statement.kind == "use":
            return _pack_int(SET_KEYSPACE) + _pack_string(statement.keyspace)
        assert statement.table is not None
        table = statement.table
        if table.keyspace == self.keyspace and not self.answering.wait(HOLD_LIMIT):
            raise CQLError(SERVER_ERROR, "the test held the answer too long")
        bound = iter(values)
        terms = {
            column: _value(term, table.columns[column], bound) for column, term in statement.terms
        }
        if statement.kind == "insert":
            table.upsert(terms)
            return _pack_int(VOID)
        rows = [row for row in table.rows if all(row.get(c) == v for c, v in terms.items())]
        encoded = [table.encode(row, name) for row in rows for name in statement.columns]
        metadata = self._result_metadata(statement, skip_metadata)
        return _pack_int(ROWS) + metadata + _pack_int(len(rows)) + b"".join(encoded)

    def _parse(self, query: str) -> _Statement:
        text = query.strip()
        if match := _USE.fullmatch(text):
            return _Statement("use", None, [], [], keyspace=match[1])
        if match := _SELECT.fullmatch(text):
            table = self._table(match[2], match[3])
            columns = match["columns"].strip()
            names = list(table.columns) if columns == "*" else _names(columns)
            terms = [(table.check(match[4]), match["term"])] if match["term"] else []
            return _Statement("select", table, [table.check(n) for n in names], terms)
        if match := _INSERT.fullmatch(text):
            table = self._table(match[1], match[2])
            columns = [table.check(name) for name in _names(match["columns"])]
            terms = re.findall(_TERM, match["terms"], re.IGNORECASE)
            if len(terms) != len(columns):
                raise CQLError(INVALID, "Unmatched column names/values")
            return _Statement("insert", table, columns, list(zip(columns, terms, strict=True)))
        first_word = text.split(maxsplit=1)[0] if text else ""
        raise CQLError(SYNTAX_ERROR, f"line 1:0 no viable alternative at input '{first_word}'")

    def _table(self, keyspace: str | None, name: str) -> Table:
        if keyspace == "system":
            system = self._system_tables()
            if name in system:
                return system[name]
        elif keyspace in (None, self.keyspace) and name in self.tables:
            return self.tables[name]
        raise CQLError(INVALID, f"unconfigured table {name}")

    def _system_tables(self) -> dict[str, Table]:
        """What the driver's control connection reads: this node, and no peers."""
        local = Table(
            "system",
            "local",
            {
                "key": "varchar",
                "cluster_name": "varchar",
                "data_center": "varchar",
                "rack": "varchar",
                "host_id": "uuid",
                "partitioner": "varchar",
                "release_version": "varchar",
                "schema_version": "uuid",
                "rpc_address": "inet",
                "listen_address": "inet",
            },
        )
        local.rows.append(
            {
                "key": "local",
                "cluster_name": "Stand-in Cluster",
                "data_center": "dc1",
                "rack": "rack1",
                "host_id": self.host_id,
                "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
                "release_version": "3.11.16",
                "schema_version": self.schema_version,
                "rpc_address": "127.0.0.1",
                "listen_address": "127.0.0.1",
            }
        )
        peers = Table(
            "system",
            "peers",
            {
                "peer": "inet",
                "data_center": "varchar",
                "host_id": "uuid",
                "rack": "varchar",
                "release_version": "varchar",
                "rpc_address": "inet",
                "schema_version": "uuid",
            },
        )
        return {"local": local, "peers": peers}


def _value(term: str, column_type: str, bound: Iterator[bytes | None]) -> Any:
    """The value of a term: the next bound value for ``?``, else the literal's."""
    if term == "?":
        data = next(bound, None)
        return None if data is None else TYPES[column_type].decode(data)
    if term.lower() == "null":
        return None
    if term.startswith("'"):
        return term[1:-1].replace("''", "'")
    return int(term)


def _frames(connection: socket.socket) -> Iterator[tuple[int, int, int, bytes]]:
    """``(version, stream, opcode, body)`` of each request frame, until the client closes."""
    while True:
        header = _receive(connection, _HEADER.size)
        if header is None:
            return
        version, _flags, stream, opcode, length = _HEADER.unpack(header)
        body = _receive(connection, length)
        if body is None:
            return
        yield version & 0x7F, stream, opcode, body


def _receive(connection: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None when the connection closes first."""
    chunks = []
    while size:
        chunk = connection.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
