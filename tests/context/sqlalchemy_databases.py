"""The databases the SQLAlchemy tests run on, and what each server can tell about itself.

SQLite is a file of the test's own; PostgreSQL (127.0.0.1:5432, user
``postgres``) and MariaDB (127.0.0.1:3306, user ``root``) each get a database
created for the tests and dropped after them. A missing server fails the
tests that need it rather than skipping them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pymysql
import pytest
import sqlalchemy.exc
from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, text

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
#: How long a killed server connection may take to go away.
KILL_TIMEOUT = 5.0
#: A statement as the database receives it from a request: the span in a comment at the end.
COMMENT = re.compile(r"(?P<statement>.*) -- trace:(?P<trace>\d+),span:(?P<span>\d+)", re.DOTALL)

metadata = MetaData()
#: The one table of the tests, created and dropped by each test that uses it.
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text),
)


@dataclass
class Database:
    """One database to run the tests on.

    ``statement_seen`` runs a statement on a connection and returns its text
    as the database received it (a server's own view of its running query;
    for SQLite, the library's trace of what it executed). ``backend_id`` and
    ``kill`` identify and end the server side of a connection, as an
    operator would, from a connection of their own.
    """

    kind: str
    url: str
    syntax_error: type[sqlalchemy.exc.DBAPIError]
    statement_seen: Callable[[Connection], str]
    backend_id: Callable[[Connection], int] | None = None
    kill: Callable[[int], None] | None = None


def _sqlite_statement_seen(connection: Connection) -> str:
    traced: list[str] = []
    driver_connection = connection.connection.driver_connection
    driver_connection.set_trace_callback(traced.append)
    try:
        connection.execute(text("SELECT 1"))
    finally:
        driver_connection.set_trace_callback(None)
    (statement,) = traced
    return statement


def sqlite_database(path: str) -> Database:
    """A SQLite database in the file at ``path``."""
    return Database(
        "sqlite",
        f"sqlite:///{path}",
        sqlalchemy.exc.OperationalError,
        _sqlite_statement_seen,
    )


def _terminate_postgres_backend(pid: int) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        # The timeout makes it wait until the backend has exited.
        (terminated,) = admin.execute(
            "SELECT pg_terminate_backend(%s, %s)", (pid, int(KILL_TIMEOUT * 1000))
        ).fetchone()
    assert terminated


@contextmanager
def postgres_database() -> Iterator[Database]:
    """A PostgreSQL database of the tests' own."""
    name = f"baseplate_sqla_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(
            "postgresql",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            sqlalchemy.exc.ProgrammingError,
            lambda connection: connection.execute(
                text("SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).scalar_one(),
            lambda connection: connection.execute(text("SELECT pg_backend_pid()")).scalar_one(),
            _terminate_postgres_backend,
        )
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _kill_mariadb_connection(connection_id: int) -> None:
    with pymysql.connect(**MARIADB_ADMIN) as admin, admin.cursor() as cursor:
        cursor.execute("KILL %s", (connection_id,))
        deadline = time.monotonic() + KILL_TIMEOUT
        while cursor.execute(
            "SELECT 1 FROM information_schema.processlist WHERE id = %s", (connection_id,)
        ):
            assert time.monotonic() < deadline, f"connection {connection_id} outlived KILL"
            time.sleep(0.01)


@contextmanager
def mariadb_database() -> Iterator[Database]:
    """A MariaDB database of the tests' own."""
    name = f"baseplate_sqla_{uuid.uuid4().hex[:12]}"
    with pymysql.connect(**MARIADB_ADMIN) as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(
            "mysql",
            f"mysql+pymysql://root@127.0.0.1:3306/{name}",
            sqlalchemy.exc.ProgrammingError,
            lambda connection: connection.execute(
                text("SELECT info FROM information_schema.processlist WHERE id = connection_id()")
            ).scalar_one(),
            lambda connection: connection.execute(text("SELECT connection_id()")).scalar_one(),
            _kill_mariadb_connection,
        )
    finally:
        with pymysql.connect(**MARIADB_ADMIN) as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")


SERVERS = {"postgresql": postgres_database, "mysql": mariadb_database}


@contextmanager
def database_of(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A fresh database of ``kind``: "sqlite" (in a new temporary folder) or one of
    :data:`SERVERS`."""
    if kind == "sqlite":
        yield sqlite_database(str(tmp_path_factory.mktemp("sqlite") / "test.db"))
    else:
        with SERVERS[kind]() as database:
            yield database


def metric_lines(packets: list[bytes]) -> list[str]:
    """The statsd lines sent, sorted, with each timer's value replaced by ``<ms>``.

    The pool gauges every request sends (``clients.<name>.pool.*``) are left
    out; ``test_sqlalchemy_pool_watch`` checks them.
    """
    lines = b"\n".join(packets).decode().split("\n")
    return sorted(
        line.split(":", 1)[0] + ":<ms>|ms" if line.endswith("|ms") else line
        for line in lines
        if ".pool." not in line
    )
