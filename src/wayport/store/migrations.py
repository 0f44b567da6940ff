"""Versioned, forward-only schema migrations, written in code and run at start.

``schema_version`` records each applied migration. ``Database.migrate`` (``open_database``
calls it) applies the missing ones in order, all in one transaction, so a failed migration
leaves the schema as it was (DDL is transactional on both SQLite and Postgres). Starters that
race are serialised: on Postgres by a transaction-scoped advisory lock taken before anything is
read, on SQLite by the write lock ``BEGIN IMMEDIATE`` takes; the loser waits, then finds nothing
left to do.

Adding a migration: append ``Migration(version=N + 1, …)`` whose ``apply`` issues the change
(``ALTER TABLE``, a new index, a data fix) and update ``schema.py`` to match. Never edit a
released migration; a database newer than the code is refused rather than guessed at.

Version 1 creates the tables frozen in ``_schema_v1.py``. A migration that creates brand-new
tables may create them from ``schema.py`` (``schema.metadata.create_all(conn, tables=[…])``);
once such a table is changed by a later migration, freeze the earlier one the same way.
``tests/store/test_migrations.py`` checks that migrating an empty database yields exactly the
tables and columns of ``schema.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store import _schema_v1, schema

# "WayP": any fixed 64-bit key works; it only has to differ from other applications' keys
ADVISORY_LOCK_KEY = 0x57617950

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _v1(conn: sa.Connection) -> None:
    _schema_v1.metadata.create_all(conn)


def _v2_webhooks(conn: sa.Connection) -> None:
    # SQLite does not enforce VARCHAR lengths (and cannot alter a column's type)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE runs ALTER COLUMN status TYPE VARCHAR(32)"))
    schema.metadata.create_all(conn, tables=[schema.webhook_outbox])


# channel_inbox as migration 3 created it (frozen: migration 10 adds ``sender``)
_v3 = sa.MetaData()
_channel_inbox_v3 = sa.Table(
    "channel_inbox",
    _v3,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("payload", schema.JsonType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.UniqueConstraint("tenant_id", "channel", "message_id", name="uq_channel_inbox_message"),
    sa.Index("ix_channel_inbox_status", "tenant_id", "status", "received_at"),
)


# channel_outbox as migration 3 created it (frozen: migration 12 replaces its index)
_channel_outbox_v3 = sa.Table(
    "channel_outbox",
    _v3,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("target", sa.String(400), nullable=False),
    sa.Column("payload", schema.JsonType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("platform_id", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_channel_outbox_status", "tenant_id", "status", "target", "id"),
)


def _v3_channels(conn: sa.Connection) -> None:
    _v3.create_all(conn)
    schema.metadata.create_all(conn, tables=[schema.channel_pairings])


def _v4_security(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.tenants, schema.api_keys, schema.audit_log])


def _v5_limits_usage(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.limit_counters, schema.usage_ledger])


def _v6_agent_turns(conn: sa.Connection) -> None:
    # the resume deadline (run_timeout counts from the first start) and the pinned definitions
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN started_at DOUBLE PRECISION"))
    schema.metadata.create_all(conn, tables=[schema.agent_versions])


def _v7_workflows(conn: sa.Connection) -> None:
    tables = [schema.workflow_defs, schema.workflow_runs, schema.workflow_steps]
    schema.metadata.create_all(conn, tables=tables)


def _v8_releases(conn: sa.Connection) -> None:
    tables = [
        schema.rollouts,
        schema.release_events,
        schema.release_signals,
        schema.feedback,
        schema.eval_results,
    ]
    schema.metadata.create_all(conn, tables=tables)


def _v9_channel_nonces(conn: sa.Connection) -> None:  # channels: durable replay protection
    schema.metadata.create_all(conn, tables=[schema.channel_nonces])


# BEGIN security (migration 10): the database itself refuses to change or delete audit entries
AUDIT_APPEND_ONLY_SQLITE = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)'); END",
)
AUDIT_APPEND_ONLY_POSTGRES = (
    "CREATE FUNCTION wayport_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION USING ERRCODE = 'restrict_violation', "
    "MESSAGE = 'audit_log is append-only (' || TG_OP || ' refused)'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION wayport_audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION wayport_audit_log_append_only()",
)


def _v10_security(conn: sa.Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    for ddl in AUDIT_APPEND_ONLY_POSTGRES if postgres else AUDIT_APPEND_ONLY_SQLITE:
        conn.exec_driver_sql(ddl)
    # channel_inbox.sender: found by privacy requests even when the payload is sealed; rows
    # stored before this version hold plaintext payloads, so it is filled from them
    conn.exec_driver_sql("ALTER TABLE channel_inbox ADD COLUMN sender VARCHAR(200)")
    conn.exec_driver_sql(
        "UPDATE channel_inbox SET sender = payload->>'sender'"
        if postgres
        else "UPDATE channel_inbox SET sender = json_extract(payload, '$.sender')"
    )
    conn.exec_driver_sql(
        "CREATE INDEX ix_channel_inbox_sender ON channel_inbox (tenant_id, sender)"
    )


# END security (migration 10)


def _v11_agents(conn: sa.Connection) -> None:  # agent definitions made over the admin API
    schema.metadata.create_all(conn, tables=[schema.agents])


def _v12_outbox_heads(conn: sa.Connection) -> None:
    # the dispatcher reads each conversation's oldest pending item, not every pending row
    conn.exec_driver_sql("DROP INDEX ix_channel_outbox_status")
    (heads,) = (i for i in schema.channel_outbox.indexes if i.name == "ix_channel_outbox_heads")
    heads.create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="sessions, messages, archive, runs, run steps", apply=_v1),
    Migration(
        version=2,
        description="webhook outbox; run status fits requires_approval",
        apply=_v2_webhooks,
    ),
    Migration(version=3, description="channel inbox, outbox, pairing codes", apply=_v3_channels),
    Migration(version=4, description="tenants, api keys, audit log", apply=_v4_security),
    Migration(version=5, description="limit counters, usage ledger", apply=_v5_limits_usage),
    Migration(version=6, description="agent versions; runs.started_at", apply=_v6_agent_turns),
    Migration(version=7, description="workflow definitions, runs, steps", apply=_v7_workflows),
    Migration(
        version=8,
        description="releases: rollouts, events, signals, feedback, evals",
        apply=_v8_releases,
    ),
    Migration(
        version=9, description="channel nonces (replay protection)", apply=_v9_channel_nonces
    ),
    Migration(
        version=10,
        description="audit log append-only (triggers); channel inbox sender",
        apply=_v10_security,
    ),
    Migration(version=11, description="agent definitions (admin API)", apply=_v11_agents),
    Migration(
        version=12,
        description="channel outbox: index of each conversation's oldest item",
        apply=_v12_outbox_heads,
    ),
)


def apply_migrations(
    conn: sa.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    now: Callable[[], float] = time.time,
) -> list[int]:
    """Apply the missing migrations inside the caller's write transaction (``Database.migrate``
    provides one); return their versions, ``[]`` when already up to date. Raises ``StoreError``
    when the database is newer than ``migrations``."""
    _check_sequence(migrations)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    # on SQLite the transaction began with BEGIN IMMEDIATE: the write lock is already ours
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StoreError(
            f"the database schema is at version {current}, newer than this Wayport knows "
            f"({latest}); upgrade Wayport or point it at another database"
        )
    applied: list[int] = []
    for migration in migrations[current:]:
        migration.apply(conn)
        conn.execute(
            sa.insert(schema_version).values(
                version=migration.version, description=migration.description, applied_at=now()
            )
        )
        applied.append(migration.version)
    return applied


def read_version(conn: sa.Connection) -> int:
    """The newest applied version, 0 for an empty database."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3 … without gaps: {versions}")
