"""Version 1 of the schema, frozen as released: migration 1 creates exactly these tables.

Never edit this file. Later changes to ``schema.py`` are made by later migrations.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

_Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), nullable=False)


def _owned_by(parent: str, column: str) -> sa.ForeignKeyConstraint:
    """A tenant-carrying foreign key to ``parent``; deleting the parent deletes the row."""
    return sa.ForeignKeyConstraint(
        ["tenant_id", column], [f"{parent}.tenant_id", f"{parent}.id"], ondelete="CASCADE"
    )


sessions = sa.Table(
    "sessions",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("agent_version", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("metadata", _Json, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("pinned", _Json, nullable=True),
    # the seq of the newest message: appends allocate seqs by bumping it, which on Postgres also
    # row-locks the session so concurrent appenders queue up instead of colliding
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    # history below ``archived_upto`` lives compressed in session_archive
    sa.Column("archived_upto", sa.Integer, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_sessions_idle", "tenant_id", "updated_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    _tenant(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", _Json, nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("tool_calls", _Json, nullable=True),
    sa.Column("tool_call_id", sa.String(200), nullable=True),
    sa.Column("tokens", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    # no foreign key to runs: a message outlives nothing, the session cascade removes both
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("step_no", sa.Integer, nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "session_id", "seq"),
    _owned_by("sessions", "session_id"),
    # NULL keys never collide (both databases), so only keyed messages are deduplicated
    sa.UniqueConstraint("tenant_id", "session_id", "idempotency_key", name="uq_messages_idem"),
)

session_archive = sa.Table(
    "session_archive",
    metadata,
    _tenant(),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("first_seq", sa.Integer, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("codec", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "session_id", "first_seq"),
    _owned_by("sessions", "session_id"),
)

runs = sa.Table(
    "runs",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", _Json, nullable=True),
    sa.Column("output", _Json, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", sa.Double, nullable=True),
    sa.Column("agent_version", sa.String(200), nullable=False, server_default=""),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    _owned_by("sessions", "session_id"),
    # claiming (oldest queued first) and resuming (unfinished) both walk this index
    sa.Index("ix_runs_status", "tenant_id", "status", "created_at"),
    sa.Index("ix_runs_session", "tenant_id", "session_id"),
)

run_steps = sa.Table(
    "run_steps",
    metadata,
    _tenant(),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("step_no", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("payload", _Json, nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "run_id", "step_no"),
    _owned_by("runs", "run_id"),
)
