"""``wayport runs``: workflow runs of a running server, as a table, or one run's steps, live.

wayport runs                          # the 20 newest runs
wayport runs --status waiting         # what waits for an approval or a timer
wayport runs wfr-1a2b…                # one run: every step, its status, attempt and time
wayport runs wfr-1a2b… --watch        # redrawn until the run finishes
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wayport.cli.console import out
from wayport.core.errors import AuthError, InvalidRequest, NotFound, StoreError, WayportError

_STYLE = {
    "completed": "green",
    "running": "cyan",
    "queued": "blue",
    "waiting": "yellow",
    "retry": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "skipped": "dim",
}
_FINISHED = ("completed", "failed", "cancelled")


async def _get(url: str, path: str, api_key: str | None, params: Mapping[str, str]) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with (
            aiohttp.ClientSession(
                base_url=url.rstrip("/") + "/", timeout=aiohttp.ClientTimeout(total=10)
            ) as session,
            session.get(path.lstrip("/"), params=dict(params), headers=headers) as response,
        ):
            body = await response.json(content_type=None)
            if response.status >= 400:
                message = (body.get("error") or {}).get("message", response.reason)
                kind = {401: AuthError, 404: NotFound}.get(response.status, InvalidRequest)
                raise kind(str(message))
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise StoreError(f"cannot reach {url}: {exc}") from exc


def _status(status: str) -> Text:
    return Text(status, style=_STYLE.get(status, ""))


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


def runs_table(runs: list[Mapping[str, Any]]) -> Table:
    table = Table(title="workflow runs", title_justify="left")
    table.add_column("run", no_wrap=True)
    for column in ("workflow", "status", "trigger", "created", "error"):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r["id"],
            r["workflow"],
            _status(r["status"]),
            r.get("trigger") or "",
            _when(r.get("created_at")),
            escape((r.get("error") or "")[:80]),
        )
    return table


def run_view(run: Mapping[str, Any]) -> Group:
    """The run's header and a table of its steps, in the order they started."""
    steps = run.get("steps") or []
    done = sum(1 for s in steps if s["status"] in ("completed", "skipped"))
    header = Text.assemble(
        (f"{run['id']} ", "bold"),
        f"{run['workflow']} ",
        _status(run["status"]),
        f"  {done}/{len(steps)} steps done  version {run['version']}",
    )
    table = Table(show_edge=False)
    for column in ("step", "kind", "status", "attempt", "seconds", "output / error"):
        table.add_column(column)
    for s in steps:
        started, finished = s.get("started_at"), s.get("finished_at")
        seconds = f"{finished - started:.2f}" if started and finished else ""
        detail = s.get("error") or s.get("output")
        table.add_row(
            s["path"],
            s["kind"],
            _status(s["status"]),
            str(s.get("attempt") or ""),
            seconds,
            escape(str(detail if detail is not None else "")[:80]),
        )
    parts: list[Any] = [header, table]
    if run.get("error"):
        parts.append(Text(f"error: {run['error']}", style="red"))
    elif run["status"] == "completed":
        parts.append(Text(f"output: {str(run.get('output'))[:200]}", style="green"))
    return Group(*parts)


async def show_runs(
    url: str,
    *,
    api_key: str | None,
    run_id: str | None,
    workflow: str | None,
    status: str | None,
    limit: int,
    watch: bool,
    interval: float = 1.0,
) -> int:
    """Print the runs (or one run); with ``watch``, redraw one run until it finishes."""
    console = out()
    if run_id is None:
        params = {"limit": str(limit)}
        if workflow:
            params["workflow"] = workflow
        if status:
            params["status"] = status
        body = await _get(url, "/v1/workflow-runs", api_key, params)
        console.print(runs_table(body["data"]))
        return 0
    path = f"/v1/workflow-runs/{run_id}"
    run = await _get(url, path, api_key, {})
    if not watch or run["status"] in _FINISHED:
        console.print(run_view(run))
        return 0 if run["status"] != "failed" else 1
    with Live(run_view(run), console=console, refresh_per_second=4) as live:
        while run["status"] not in _FINISHED:
            await asyncio.sleep(interval)
            try:
                run = await _get(url, path, api_key, {})
            except WayportError:
                continue  # the server may be restarting: its runs resume, keep watching
            live.update(run_view(run))
    return 0 if run["status"] != "failed" else 1
