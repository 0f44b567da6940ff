"""Database errors translated into ``wayport.core.errors``: the store's one boundary::

with translated():
    rows = conn.execute(stmt)  # IntegrityError -> Conflict, OperationalError -> StoreError
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from wayport.core.errors import Conflict, InvalidRequest, StoreError, WayportError

DB_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, OSError)
"""What a database call raises on its own (asyncpg and sqlite3 errors arrive wrapped)."""

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.InternalError,
    OSError,
)
"""Failures of the database or the connection rather than of one statement's data: nothing
on the same connection can succeed until it is replaced."""


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, CONNECTION_ERRORS)


def translate(exc: Exception) -> Exception:
    """The ``WayportError`` a caller sees for ``exc``; foreign non-database errors (bugs) are
    returned unchanged so they surface as they are."""
    if isinstance(exc, WayportError):
        return exc
    if isinstance(exc, sa.exc.IntegrityError):
        return Conflict(f"the write conflicts with stored data: {describe(exc)}")
    if isinstance(exc, sa.exc.StatementError) and isinstance(exc.orig, TypeError | ValueError):
        # raised while binding parameters: a value the column cannot hold (not JSON, say)
        return InvalidRequest(f"a value cannot be stored: {exc.orig}")
    if isinstance(exc, DB_ERRORS):
        return StoreError(f"the database failed: {describe(exc)}", retry_after=1.0)
    return exc


@contextmanager
def translated() -> Iterator[None]:
    """Raise what ``translate`` makes of an exception escaping the block."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def describe(exc: BaseException) -> str:
    """One line about what failed, without the SQL text SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    detail = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {detail[0] if detail else ''}"
