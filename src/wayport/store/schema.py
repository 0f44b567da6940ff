"""The tables, in SQLAlchemy Core, shared by SQLite and Postgres.

Every table leads with ``tenant_id`` and every key is composite with it: ids are unique per
tenant, each foreign key carries the tenant, so a row can never point into another tenant, and
the tenant-prefixed keys are the indexes every scoped query uses. Deleting a session cascades to
its messages, archive, runs and run steps in the database itself, so no code path can leave
orphans behind.

Times are ``DOUBLE`` seconds since the epoch: one representation on both databases, compared in
SQL (heartbeat staleness, idle sessions) without time-zone handling.

The schema is created and changed only by ``wayport.store.migrations``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

# JSONB on Postgres (indexable, compact); JSON text on SQLite. ``none_as_null``: Python None is
# SQL NULL, not the JSON literal ``null``.
JsonType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


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
    sa.Column("metadata", JsonType, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("pinned", JsonType, nullable=True),
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
    sa.Column("content", JsonType, nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("tool_calls", JsonType, nullable=True),
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
    # 32 since migration 2: "requires_approval" is longer than the 16 of version 1
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("input", JsonType, nullable=True),
    sa.Column("output", JsonType, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", sa.Double, nullable=True),
    sa.Column("agent_version", sa.String(200), nullable=False, server_default=""),
    # since migration 5 (agent turns): when execution first began; run_timeout counts from it
    sa.Column("started_at", sa.Double, nullable=True),
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
    sa.Column("payload", JsonType, nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "run_id", "step_no"),
    _owned_by("runs", "run_id"),
)

# --- webhook outbox (agents API, run completion webhooks) ---------------------------------
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    _tenant(),
    # one completion webhook per run; armed with the run, sent once the run has finished
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=True),  #: the run's own; NULL: the configured one
    sa.Column("state", sa.String(16), nullable=False),  #: armed, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("delivered_at", sa.Double, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "run_id"),
    _owned_by("runs", "run_id"),
    sa.Index("ix_webhook_outbox_due", "tenant_id", "state", "next_attempt_at"),
)
# --- end webhook outbox ------------------------------------------------------------------

# --- channels (inbox, outbox, pairing codes) ------------------------------------------------
channel_inbox = sa.Table(
    "channel_inbox",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),  #: the platform's
    sa.Column("payload", JsonType, nullable=False),  #: the core Inbound
    sa.Column("status", sa.String(16), nullable=False),  #: received, started, done, ignored
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # security (migration 10): the sender in plaintext beside the (sealable) payload, so that
    # privacy requests find a user's messages
    sa.Column("sender", sa.String(200), nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    # a platform retrying a delivery sends the same message id: stored (and run) once
    sa.UniqueConstraint("tenant_id", "channel", "message_id", name="uq_channel_inbox_message"),
    sa.Index("ix_channel_inbox_status", "tenant_id", "status", "received_at"),
    sa.Index("ix_channel_inbox_sender", "tenant_id", "sender"),  # security (migration 10)
)

channel_outbox = sa.Table(
    "channel_outbox",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("target", sa.String(400), nullable=False),  #: chat and thread
    sa.Column("payload", JsonType, nullable=False),  #: the core Outbound
    sa.Column("status", sa.String(16), nullable=False),  #: pending, delivered, dropped
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("platform_id", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    # each conversation's oldest pending item (``SqlChannelStore.heads``), read from the index
    sa.Index(
        "ix_channel_outbox_heads", "tenant_id", "status", "channel", "target", "created_at", "id"
    ),
)

channel_pairings = sa.Table(
    "channel_pairings",
    metadata,
    _tenant(),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("sender", sa.String(200), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("approved_at", sa.Double, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "channel", "sender"),
    sa.UniqueConstraint("tenant_id", "channel", "code", name="uq_channel_pairings_code"),
)

# request signatures seen (webhook replay protection), kept until they expire, then swept
channel_nonces = sa.Table(
    "channel_nonces",
    metadata,
    _tenant(),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("nonce", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "channel", "nonce"),
    sa.Index("ix_channel_nonces_expiry", "tenant_id", "expires_at"),
)
# --- end channels ---------------------------------------------------------------------------

# --- security (tenants, API keys, audit log) ---------------------------------------------
# The registry of tenants: ``tenant_id`` is the tenant's own id. Not in TENANT_TABLES: it is
# the list of scopes itself, read by id or by organisation (``wayport.store.tenants``).
tenants = sa.Table(
    "tenants",
    metadata,
    _tenant(),
    sa.Column("org", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id"),
    sa.Index("ix_tenants_org", "org", "tenant_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(32), nullable=False),  #: public: the key reads wp_<tenant>_<id>_…
    sa.Column("hash", sa.String(64), nullable=False),  #: SHA-256 of the whole key, hex
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("scopes", JsonType, nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Column("last_used_at", sa.Double, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    _tenant(),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("details", JsonType, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),  #: the hash chain (core.identity)
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "seq"),
)
# --- end security -------------------------------------------------------------------------

# --- limits and usage (wayport.store.budgets, wayport.store.usage) ---------------------------
limit_counters = sa.Table(
    "limit_counters",
    metadata,
    _tenant(),
    sa.Column("key", sa.String(200), nullable=False),  #: ``wayport.core.limits.Charge.key``
    sa.Column("used", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=True),  #: a spend window's end
    sa.PrimaryKeyConstraint("tenant_id", "key"),
)

usage_ledger = sa.Table(
    "usage_ledger",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(200), nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("agent", sa.String(200), nullable=True),
    sa.Column("agent_version", sa.String(200), nullable=True),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Double, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_usage_ledger_at", "tenant_id", "at"),
)
# --- end limits and usage ---------------------------------------------------------------

# --- agent versions (agent turns: a resumed run keeps the definition it started with) ----
agent_versions = sa.Table(
    "agent_versions",
    metadata,
    _tenant(),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),  #: ``AgentSpec.version``
    sa.Column("spec", JsonType, nullable=False),  #: ``wayport.store.codec.spec_to_json``
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "agent", "version"),
)
# --- end agent versions -------------------------------------------------------------------

# --- agent definitions made over the admin API (store/agents.py); config agents stay in YAML -
agents = sa.Table(
    "agents",
    metadata,
    _tenant(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("spec", JsonType, nullable=False),  #: ``wayport.store.codec.spec_to_json``
    sa.Column("version", sa.String(200), nullable=False),  #: ``AgentSpec.version``
    sa.Column("revision", sa.Integer, nullable=False),  #: 1 on create, +1 on each replace
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "name"),
)
# --- end agent definitions ------------------------------------------------------------------

# --- durable workflows (store/workflows.py) ------------------------------------------------
# definitions by content hash: a run finishes on the version it started with
workflow_defs = sa.Table(
    "workflow_defs",
    metadata,
    _tenant(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("definition", JsonType, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "name", "version"),
)

workflow_runs = sa.Table(
    "workflow_runs",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(100), nullable=False),
    sa.Column("workflow", sa.String(100), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JsonType, nullable=True),
    sa.Column("output", JsonType, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("trigger", sa.String(32), nullable=False, server_default="api"),
    sa.Column("parent_run_id", sa.String(100), nullable=True),
    sa.Column("parent_step", sa.String(100), nullable=True),
    # a waiting run is claimable again from wake_at (timers, retry backoff)
    sa.Column("wake_at", sa.Double, nullable=True),
    # bumped when a step is resolved from outside (approvals): parking checks it
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", sa.Double, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_workflow_runs_status", "tenant_id", "status", "wake_at"),
    sa.Index("ix_workflow_runs_created", "tenant_id", "created_at"),
)

workflow_steps = sa.Table(
    "workflow_steps",
    metadata,
    _tenant(),
    sa.Column("run_id", sa.String(100), nullable=False),
    sa.Column("path", sa.String(100), nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("item_index", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("output", JsonType, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("wake_at", sa.Double, nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "run_id", "path"),
    _owned_by("workflow_runs", "run_id"),
)
# --- end durable workflows ------------------------------------------------------------------

# --- releases (store/releases.py): rollouts, their history, signals, feedback, evals -------
rollouts = sa.Table(
    "rollouts",
    metadata,
    _tenant(),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("state", JsonType, nullable=False),  #: ``core.release_codec.state_to_dict``
    sa.Column("strategy", JsonType, nullable=False),  #: ``strategy_to_dict``
    sa.Column("revision", sa.Integer, nullable=False),  #: compare-and-set between replicas
    sa.Column("window_start", sa.Double, nullable=False),  #: signals count from here
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "agent"),
)

release_events = sa.Table(
    "release_events",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(100), nullable=False),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("detail", JsonType, nullable=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_release_events_agent", "tenant_id", "agent", "at"),
)

release_signals = sa.Table(
    "release_signals",
    metadata,
    _tenant(),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("bucket", sa.Double, nullable=False),  #: start of the aggregate's time slice
    sa.Column("replica", sa.String(100), nullable=False),
    sa.Column("data", JsonType, nullable=False),  #: counts and latency histograms
    sa.PrimaryKeyConstraint("tenant_id", "agent", "version", "bucket", "replica"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    _tenant(),
    sa.Column("run_id", sa.String(100), nullable=False),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),  #: +1 or -1
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "run_id"),
    sa.Index("ix_feedback_version", "tenant_id", "agent", "version", "at"),
)

eval_results = sa.Table(
    "eval_results",
    metadata,
    _tenant(),
    sa.Column("id", sa.String(100), nullable=False),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("suite", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("score", sa.Double, nullable=False),
    sa.Column("results", JsonType, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
    sa.Index("ix_eval_results_version", "tenant_id", "agent", "version", "at"),
)
# --- end releases ---------------------------------------------------------------------------

TENANT_TABLES: tuple[sa.Table, ...] = (
    sessions,
    messages,
    session_archive,
    runs,
    run_steps,
    agent_versions,
    agents,  # agent definitions (admin API)
    webhook_outbox,
    channel_inbox,
    channel_outbox,
    channel_pairings,
    channel_nonces,  # channels: replay protection
    api_keys,
    audit_log,
    limit_counters,  # limits and usage
    usage_ledger,  # limits and usage
    workflow_defs,  # durable workflows
    workflow_runs,  # durable workflows
    workflow_steps,  # durable workflows
    rollouts,  # releases
    release_events,  # releases
    release_signals,  # releases
    feedback,  # releases
    eval_results,  # releases
)
