"""``wayport keys …``: issue, list and revoke API keys, in process on the configured store
(no server needed; over HTTP use ``/v1/admin/keys``).

    wayport keys create --name ci --role deployer        # prints the key once
    wayport keys create --tenant acme-prod --role owner
    wayport keys list
    wayport keys revoke abcdefghij23

Whoever runs these commands can read the store, so they act as the tenant's owner; each action
is written to the tenant's audit log with the actor ``cli``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from wayport.cli.console import fail, out
from wayport.core.errors import ConfigError, WayportError
from wayport.core.identity import Principal, Role
from wayport.core.session import DEFAULT_TENANT

if TYPE_CHECKING:
    from wayport.service.keys import Security

keys_app = typer.Typer(help="Issue, list and revoke API keys (in process, on the store).")

T = TypeVar("T")
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file.", envvar="WAYPORT_CONFIG"),
]
TenantOption = Annotated[str, typer.Option(help="The tenant the key belongs to.")]


def on_store(config: Path | None, work: Callable[[Security], Awaitable[T]]) -> T:
    """Open the configured store, run ``work`` with the security services on it, close."""
    from wayport.config.loader import load_config
    from wayport.service.keys import Security
    from wayport.store import open_store

    try:
        cfg = load_config(config, bind_check=False)
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")

    async def main() -> T:
        store = await open_store(cfg.store.url, state_dir=cfg.state_dir)
        security = Security.build(lambda: store)
        try:
            return await work(security)
        finally:
            await security.close()
            await store.close()

    try:
        return asyncio.run(main())
    except WayportError as exc:
        fail(exc.message)


def cli_owner(tenant: str) -> Principal:
    return Principal(tenant=tenant, role=Role.OWNER, key_id="cli")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    role: Annotated[
        str, typer.Option(help="owner, admin, deployer, developer, user or viewer.")
    ] = "user",
    scope: Annotated[
        list[str] | None, typer.Option(help="Limit the key to a scope (repeatable).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="The end user the key speaks for.")] = None,
    expires_in: Annotated[
        float | None, typer.Option(help="Seconds until the key expires.", min=1)
    ] = None,
    tenant: TenantOption = DEFAULT_TENANT,
    config: ConfigOption = None,
) -> None:
    """Issue a key and print it (it is shown this once)."""
    try:
        wanted = Role.parse(role)
    except ValueError as exc:
        fail(str(exc))

    async def work(security: Security) -> str:
        expires_at = security.keys.now() + expires_in if expires_in else None
        _, token = await security.keys.create(
            cli_owner(tenant),
            name=name,
            role=wanted,
            scopes=scope or (),
            user=user,
            expires_at=expires_at,
        )
        return token

    out().print(on_store(config, work), markup=False)


@keys_app.command("list")
def list_keys(tenant: TenantOption = DEFAULT_TENANT, config: ConfigOption = None) -> None:
    """The tenant's keys as JSON lines (never their secrets)."""
    from wayport.server.admin_api import key_json

    keys = on_store(config, lambda security: security.keys.list(cli_owner(tenant)))
    for key in keys:
        out().print(json.dumps(key_json(key)), markup=False)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (after wp_<tenant>_).")],
    tenant: TenantOption = DEFAULT_TENANT,
    config: ConfigOption = None,
) -> None:
    """Revoke a key: refused from the next request on (other processes within a minute)."""
    key = on_store(config, lambda security: security.keys.revoke(cli_owner(tenant), key_id))
    out().print(f"revoked {key.prefix}", markup=False)
