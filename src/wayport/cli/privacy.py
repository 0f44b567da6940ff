"""``wayport privacy …`` and ``wayport store …``: privacy requests, retention and encryption
keys, run in process against the configured store (no server needed).

    wayport privacy export --user u-42 > u-42.json
    wayport privacy delete --session sess-1
    wayport privacy sweep                      # one retention pass (store.retention_days)
    wayport store keygen k2                    # a fresh kid:base64key entry
    wayport store reencrypt                    # re-seal old rows with the first key
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wayport.cli.console import err, fail, out
from wayport.cli.progress import Advance, progress_bar
from wayport.core.errors import ConfigError, WayportError
from wayport.core.session import DEFAULT_TENANT

if TYPE_CHECKING:  # the heavy modules load inside the commands: ``wayport --help`` stays fast
    from wayport.config.schema import WayportConfig
    from wayport.service.privacy import PrivacyService, Subject
    from wayport.store import SqlStore
    from wayport.store.sealing import Sealer

privacy_app = typer.Typer(help="Export or delete a user's data; apply the retention policy.")
store_app = typer.Typer(help="Encryption at rest: generate keys, re-seal stored data.")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file.", envvar="WAYPORT_CONFIG"),
]
TenantOption = Annotated[str, typer.Option(help="Tenant whose data it is.")]
UserOption = Annotated[str | None, typer.Option(help="The user (sessions' metadata.user).")]
SessionOption = Annotated[str | None, typer.Option(help="One session id.")]


def _config(path: Path | None) -> WayportConfig:
    from wayport.config.loader import load_config

    try:
        return load_config(path, bind_check=False)
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")


def _sealer(config: WayportConfig) -> Sealer:
    from wayport.store.sealing import Sealer

    keys = config.store.encryption_keys
    return Sealer.parse(keys.get_secret_value() if keys is not None else None)


def _service(store: SqlStore, sealer: Sealer, days: int | None = None) -> PrivacyService:
    from wayport.service.privacy import PrivacyService
    from wayport.store.privacy import SqlPrivacyStore

    return PrivacyService(
        store=lambda: SqlPrivacyStore.of(store, sealer=sealer), retention_days=days
    )


async def _open(config: WayportConfig) -> tuple[SqlStore, Sealer]:
    from wayport.store import open_store

    sealer = _sealer(config)
    store = await open_store(config.store.url, state_dir=config.state_dir, sealer=sealer)
    return store, sealer


def _subject(user: str | None, session: str | None) -> Subject:
    from wayport.service.privacy import Subject

    try:
        return Subject(user=user, session=session)
    except WayportError:
        fail("give exactly one of --user or --session")


def _run(work: Any) -> Any:
    try:
        return asyncio.run(work)
    except WayportError as exc:
        fail(exc.message)


@privacy_app.command("export")
def export(
    user: UserOption = None,
    session: SessionOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File; default stdout.")] = (
        None
    ),
    config: ConfigOption = None,
) -> None:
    """Everything stored about a user or a session, as JSON (the steps as a bar on a
    terminal's stderr)."""
    subject = _subject(user, session)
    settings = _config(config)
    who = f"user {user}" if user is not None else f"session {session}"

    async def work(advance: Advance) -> dict[str, Any]:
        store, sealer = await _open(settings)
        advance(description=f"Reading {who}'s data")
        try:
            service = _service(store, sealer)
            return await service.export(tenant, subject)
        finally:
            await store.close()

    # steps: open the store, read everything, write the JSON
    with progress_bar("Opening the store", total=3) as advance:
        found = _run(work(advance))
        advance(description="Writing JSON")
        text = json.dumps(found, indent=2, ensure_ascii=False, default=str)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n", encoding="utf-8")
        advance()
    if output is not None:
        err().print(f"wrote {output}")


@privacy_app.command("delete")
def delete(
    user: UserOption = None,
    session: SessionOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
    config: ConfigOption = None,
) -> None:
    """Delete a user's or a session's sessions, messages, runs and usage rows."""
    subject = _subject(user, session)
    settings = _config(config)

    async def work() -> dict[str, int]:
        store, sealer = await _open(settings)
        try:
            service = _service(store, sealer)
            return await service.erase(tenant, subject)
        finally:
            await store.close()

    deleted = _run(work())
    out().print(
        f"deleted {deleted['sessions']} sessions, {deleted['usage_rows']} usage rows, "
        f"{deleted.get('channel_messages', 0)} channel messages"
    )


@privacy_app.command("sweep")
def sweep(config: ConfigOption = None) -> None:
    """Delete sessions idle longer than store.retention_days, in every tenant, once."""
    settings = _config(config)
    days = settings.store.retention_days
    if days is None:
        fail("store.retention_days is not set: nothing expires")

    async def work() -> int:
        store, sealer = await _open(settings)
        try:
            service = _service(store, sealer, days)
            return await service.sweep()
        finally:
            await store.close()

    out().print(f"deleted {_run(work())} sessions idle for more than {days} days")


@store_app.command("keygen")
def keygen(
    kid: Annotated[str, typer.Argument(help="Key id, stored with every row it seals.")] = "k1",
) -> None:
    """Print a new kid:base64key entry; put it first in WAYPORT_ENCRYPTION_KEYS to rotate."""
    from wayport.store.sealing import Sealer, generate_key

    try:
        entry = generate_key(kid)
        Sealer.parse(entry)
    except ConfigError as exc:
        fail(exc.message)
    typer.echo(entry)


@store_app.command("reencrypt")
def reencrypt_command(
    batch: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
    config: ConfigOption = None,
) -> None:
    """Re-seal every stored row with the first (active) key; rows already sealed with it are
    skipped, so it can be interrupted and run again. Without keys: decrypts everything."""
    from wayport.store.reseal import count_rows, reencrypt

    settings = _config(config)

    async def work() -> tuple[int, int]:
        store, sealer = await _open(settings)
        try:
            total = await count_rows(store.db)
            with progress_bar("re-sealing", total=total) as advance:
                report = await reencrypt(
                    store.db,
                    sealer,
                    batch=batch,
                    progress=lambda table, n: advance(n, description=f"re-sealing {table}"),
                )
            return report.scanned, report.resealed
        finally:
            await store.close()

    scanned, resealed = _run(work())
    active = _sealer(settings).active
    key = f"key {active!r}" if active else "no key (plaintext)"
    out().print(f"re-sealed {resealed} of {scanned} rows with {key}")
