"""Durable stores on SQLite (default, embedded) and Postgres, implementing the store ports of
``wayport.ports``: ``open_store(url)`` gives the sessions and runs stores on one database."""

from wayport.store.database import Database
from wayport.store.engine import open_database, resolve_url
from wayport.store.migrations import MIGRATIONS, Migration
from wayport.store.runs import SqlRunStore
from wayport.store.sessions import SqlSessionStore
from wayport.store.sql import SqlStore, open_store

__all__ = [
    "MIGRATIONS",
    "Database",
    "Migration",
    "SqlRunStore",
    "SqlSessionStore",
    "SqlStore",
    "open_database",
    "open_store",
    "resolve_url",
]
