"""``wayport audit …``: export and verify a tenant's audit log, in process on the store.

wayport audit export > audit.jsonl
wayport audit export --format csv --tenant acme-prod > audit.csv
wayport audit verify                    # exit 1 if the hash chain was tampered with
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from wayport.cli.console import fail, out
from wayport.cli.keys import ConfigOption, TenantOption, on_store
from wayport.cli.progress import track
from wayport.core.session import DEFAULT_TENANT

if TYPE_CHECKING:
    from wayport.service.audit import ExportFormat
    from wayport.service.keys import Security

audit_app = typer.Typer(help="Export and verify the audit log (in process, on the store).")


@audit_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    tenant: TenantOption = DEFAULT_TENANT,
    config: ConfigOption = None,
) -> None:
    """Write the whole log to stdout, oldest first (a bar of entries on a terminal's stderr)."""
    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv")

    kind: ExportFormat = "csv" if fmt == "csv" else "jsonl"

    async def work(security: Security) -> None:
        # line by line as the pages arrive: a long log is never held whole in memory
        async for line in track(security.audit.export(tenant, fmt=kind), "Exporting audit log"):
            sys.stdout.write(line)
        sys.stdout.flush()

    on_store(config, work)


@audit_app.command("verify")
def verify(tenant: TenantOption = DEFAULT_TENANT, config: ConfigOption = None) -> None:
    """Check the hash chain; exit 1 at the first entry that was changed or removed."""

    async def work(security: Security) -> int | str:
        try:
            return await security.audit.verify(tenant)
        except ValueError as exc:
            return str(exc)

    result = on_store(config, work)
    if isinstance(result, str):
        fail(f"the audit log was tampered with: {result}")
    out().print(f"ok: {result} entries", markup=False)
