"""Which driver and I/O errors mean "send it again" (a 503) and which are defects (a 500): the table the app's
handler and every surface rely on (`server.db.send_again_error`)."""

from __future__ import annotations

import errno
import sqlite3

import asyncpg
import pytest
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError

from server.db import send_again_error
from server.errors import DatabaseBusy, ServiceUnavailable

UNAVAILABLE = [
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError('database "x" is not currently accepting connections'),
    asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist'),
    asyncpg.exceptions.DiskFullError("could not extend file"),
    asyncpg.exceptions.InterfaceError("cannot call Transaction.rollback(): the underlying connection is closed"),
    asyncpg.exceptions.InterfaceError(
        "cannot call Connection.fetchrow(): connection has been released back to the pool"
    ),
    asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.exceptions.InternalClientError("PoolConnectionHolder.release() called on a free connection holder"),
    OperationalError(asyncpg.exceptions.AdminShutdownError("terminating connection")),
    DBConnectionError("Can't establish connection to database x"),
    ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 5432)"),
    OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0)"),
    TimeoutError(),
    sqlite3.OperationalError("database or disk is full"),
    sqlite3.OperationalError("disk I/O error"),
    OperationalError(sqlite3.OperationalError("database or disk is full")),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
]
BUSY = [
    sqlite3.OperationalError("database is locked"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
    asyncpg.exceptions.TooManyConnectionsError("too many connections for database"),
]
DEFECTS = [
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
    asyncpg.exceptions.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    IntegrityError(sqlite3.IntegrityError("UNIQUE constraint failed")),
    OperationalError(sqlite3.OperationalError("no such table: subjects")),
    FileNotFoundError(errno.ENOENT, "No such file or directory"),
    PermissionError(errno.EACCES, "Permission denied"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", UNAVAILABLE, ids=repr)
def test_a_lost_database_or_a_full_disk_is_service_unavailable(error: Exception) -> None:
    assert isinstance(send_again_error(error), ServiceUnavailable)


@pytest.mark.parametrize("error", BUSY, ids=repr)
def test_a_busy_database_is_database_busy(error: Exception) -> None:
    assert isinstance(send_again_error(error), DatabaseBusy)


@pytest.mark.parametrize("error", DEFECTS, ids=repr)
def test_anything_else_is_a_defect(error: Exception) -> None:
    assert send_again_error(error) is None


def test_an_error_raised_from_a_lost_connection_is_unavailable_too() -> None:
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        except Exception as lost:
            raise RuntimeError("while writing") from lost
    except RuntimeError as wrapped:
        assert isinstance(send_again_error(wrapped), ServiceUnavailable)
