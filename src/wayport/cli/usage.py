"""``wayport usage``: the usage ledger as a table with totals, or exported as CSV or JSON.

    wayport usage                                  # by model, this process's store
    wayport usage --group-by agent --since 2025-06-01
    wayport usage --url http://127.0.0.1:8080 --group-by key --format json
    wayport usage --records --format csv --output usage.csv   # every record, with a progress bar

Without ``--url`` it reads the configured store directly (the default tenant unless
``--tenant`` says otherwise); with ``--url`` it asks a running server (``GET /v1/usage``),
which reports the tenant of the key used.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from wayport.cli.remote import api_base
from wayport.config.schema import WayportConfig
from wayport.core.errors import BackendUnavailable, InvalidRequest, WayportError
from wayport.core.usage import UsageRecord, UsageTotal
from wayport.server.usage_api import total_body, total_of
from wayport.store import open_store
from wayport.store.usage import SqlUsageStore

COLUMNS = (
    "group",
    "requests",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
)
_PAGE = 5000


def table(rows: Sequence[dict[str, Any]], total: dict[str, Any], group_by: str) -> Table:
    out = Table(title=f"Usage by {group_by}", show_footer=True)
    for name in COLUMNS:
        label = group_by if name == "group" else name.replace("_", " ")
        out.add_column(
            label, footer=_cell(name, total), justify="left" if name == "group" else "right"
        )
    for row in rows:
        out.add_row(*(_cell(name, row) for name in COLUMNS))
    return out


def _cell(name: str, row: dict[str, Any]) -> str:
    value = row[name]
    if name == "group":
        return str(value) if value else "-"
    if name == "cost":
        return f"${value:,.6f}"
    if name == "latency_ms":
        return f"{value:,.1f}"
    return f"{value:,}"


def rows_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


async def local_totals(
    config: WayportConfig, tenant: str, group_by: str, since: float | None, until: float | None
) -> list[UsageTotal]:
    async with await open_store(config.store.url, state_dir=config.state_dir) as store:
        return await SqlUsageStore(store.db).totals(
            tenant, group_by=group_by, since=since, until=until
        )


async def local_records(
    config: WayportConfig,
    tenant: str,
    since: float | None,
    until: float | None,
    progress: Progress | None,
) -> list[UsageRecord]:
    """Every record in the window, paged, advancing ``progress`` as pages arrive."""
    found: list[UsageRecord] = []
    async with await open_store(config.store.url, state_dir=config.state_dir) as store:
        usage = SqlUsageStore(store.db)
        expected = sum(
            t.requests + t.runs
            for t in await usage.totals(tenant, group_by="tenant", since=since, until=until)
        )
        task = progress.add_task("exporting", total=expected) if progress is not None else None
        cursor = since
        seen: set[str] = set()
        while True:
            page = await usage.records(tenant, since=cursor, until=until, limit=_PAGE)
            fresh = [r for r in page if r.id not in seen]
            found.extend(fresh)
            seen.update(r.id for r in fresh)
            if progress is not None and task is not None:
                progress.update(task, completed=len(found))
            if len(page) < _PAGE or not fresh:
                return found
            cursor = page[-1].at


async def remote_totals(
    url: str, api_key: str | None, group_by: str, since: str | None, until: str | None
) -> dict[str, Any]:
    params = {"group_by": group_by}
    if since:
        params["since"] = since
    if until:
        params["until"] = until
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(f"{api_base(url)}/usage", params=params) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                raise InvalidRequest(f"HTTP {resp.status}: {body.decode(errors='replace')[:300]}")
            result: dict[str, Any] = json.loads(body)
            return result
    except aiohttp.ClientError as exc:
        raise BackendUnavailable(f"cannot reach {api_base(url)}: {exc}") from exc


def totals_body(rows: Sequence[UsageTotal]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return [total_body(t) for t in rows], total_body(total_of(list(rows)))


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise WayportError(f"cannot write {output}: {exc.strerror or exc}") from exc


def record_rows(records: Sequence[UsageRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
