"""The console's workflow pages: ``/console/workflows`` lists the tenant's recent runs, and
``/console/workflows/{run_id}`` shows one run as a graph (its steps as nodes coloured by
status, an edge from each step to the steps that need it) with its step table.

Both pages are rendered on the server, the graph as hand-written SVG (no script, no CDN);
every name, output and error in them is escaped. A run still in progress reloads itself every
two seconds. Signing in and roles are the console's (``wayport.server.console``)::

    pages = WorkflowConsole(workflows=service, authenticate=auth.authenticate)
    exact, prefixes = pages.routes()
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from html import escape
from typing import Any

from wayport.core.errors import AuthError, NotFound, WayportError
from wayport.core.identity import Principal, Role
from wayport.core.workflow import WorkflowDef
from wayport.core.workflow_run import StepRow, WorkflowRun
from wayport.server.auth import authorize
from wayport.server.console import CONSOLE_SCOPE, SECURITY_HEADERS, ConsoleRoute, session
from wayport.server.console.pages import page
from wayport.server.http import Exchange
from wayport.service.workflows import WorkflowService

__all__ = ["RUNS_PAGE", "STATUS_COLOURS", "WorkflowConsole", "graph_svg", "layout"]

RUNS_PAGE = "/console/workflows"
RUN_PREFIX = "/console/workflows/"
#: Fill colour of a step node by its status (``pending``: nothing recorded yet).
STATUS_COLOURS = {
    "pending": "#e5e7eb",
    "running": "#93c5fd",
    "waiting": "#fcd34d",
    "retry": "#fdba74",
    "completed": "#86efac",
    "failed": "#fca5a5",
    "skipped": "#d1d5db",
}
_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _PAD = 168, 48, 56, 18, 12
_HTML = b"text/html; charset=utf-8"


def layout(definition: WorkflowDef) -> dict[str, tuple[int, int]]:
    """Column and row of every step: a step's column is one more than the deepest step it
    depends on; rows keep the definition's order within a column."""
    column: dict[str, int] = {}

    def depth(step_id: str) -> int:
        if step_id not in column:
            column[step_id] = 0  # definitions are acyclic (checked when parsed)
            deps = definition.deps.get(step_id, frozenset())
            column[step_id] = 1 + max((depth(d) for d in deps), default=-1)
        return column[step_id]

    rows: dict[int, int] = {}
    placed: dict[str, tuple[int, int]] = {}
    for step in definition.steps:
        col = depth(step.id)
        placed[step.id] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    return placed


def _origin(cell: tuple[int, int]) -> tuple[int, int]:
    col, row = cell
    return _PAD + col * (_NODE_W + _GAP_X), _PAD + row * (_NODE_H + _GAP_Y)


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def graph_svg(definition: WorkflowDef, rows: Sequence[StepRow]) -> str:
    """The run's steps as an SVG graph: one ``<g class="step">`` per step (``data-step``,
    ``data-status``), one ``<path class="edge">`` per dependency."""
    by_path = {r.path: r for r in rows}
    items: dict[str, list[StepRow]] = {}
    for r in rows:
        if r.item_index is not None:
            items.setdefault(r.step_id, []).append(r)
    cells = layout(definition)
    width = max(_origin(c)[0] for c in cells.values()) + _NODE_W + _PAD if cells else 2 * _PAD
    height = max(_origin(c)[1] for c in cells.values()) + _NODE_H + _PAD if cells else 2 * _PAD
    parts = [
        f'<svg id="workflow-graph" class="workflow-graph" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(definition.name)} steps">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker>'
        "</defs>",
    ]
    for step in definition.steps:
        x, y = _origin(cells[step.id])
        for dep in sorted(definition.deps.get(step.id, frozenset())):
            if dep not in cells:
                continue
            dx, dy = _origin(cells[dep])
            x1, y1, x2, y2 = dx + _NODE_W, dy + _NODE_H // 2, x, y + _NODE_H // 2
            mid = (x1 + x2) // 2
            parts.append(
                f'<path class="edge" data-from="{escape(dep)}" data-to="{escape(step.id)}" '
                f'd="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
                'stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for step in definition.steps:
        x, y = _origin(cells[step.id])
        row = by_path.get(step.id)
        status = row.status.value if row is not None else "pending"
        detail = f"{step.kind.value} · {status}"
        its = items.get(step.id)
        if its:
            done = sum(1 for r in its if r.status.value in ("completed", "skipped"))
            detail = f"{step.kind.value} · {done}/{len(its)} items"
        elif row is not None and row.attempt > 1:
            detail += f" · try {row.attempt}"
        fill = STATUS_COLOURS.get(status, STATUS_COLOURS["pending"])
        tip = row.error if row is not None and row.error else status
        parts.append(
            f'<g class="step" data-step="{escape(step.id)}" data-status="{escape(status)}">'
            f"<title>{escape(step.id)}: {escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
            f'fill="{fill}" stroke="#374151" stroke-width="1"/>'
            f'<text x="{x + 10}" y="{y + 20}" font-size="13" font-weight="600" '
            f'fill="#111827">{escape(_short(step.id, 20))}</text>'
            f'<text x="{x + 10}" y="{y + 38}" font-size="11" fill="#374151">'
            f"{escape(_short(detail, 26))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _when(seconds: float | None) -> str:
    if not seconds:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + " UTC"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _short(text, 160)


def _legend() -> str:
    keys = "".join(
        f'<svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" rx="2" '
        f'fill="{colour}" stroke="#374151"/></svg> {escape(name)} '
        for name, colour in STATUS_COLOURS.items()
    )
    return f'<p class="hint legend">{keys}</p>'


def runs_html(runs: Sequence[WorkflowRun], *, configured: bool) -> str:
    if not configured:
        return '<p class="hint" id="workflows-none">No workflows are configured on this server.</p>'
    body = "".join(
        f'<tr class="workflow-run" data-status="{escape(r.status.value)}">'
        f'<td><a href="{RUN_PREFIX}{escape(r.id)}">{escape(r.id)}</a></td>'
        f"<td>{escape(r.workflow)}</td><td>{escape(r.status.value)}</td>"
        f"<td>{escape(r.trigger)}</td><td>{_when(r.created_at)}</td>"
        f"<td>{_when(r.updated_at)}</td></tr>"
        for r in runs
    )
    if not body:
        body = '<tr><td colspan="6" class="hint">No workflow runs yet.</td></tr>'
    return (
        '<table id="workflow-runs"><thead><tr><th>run</th><th>workflow</th><th>status</th>'
        f"<th>trigger</th><th>created</th><th>updated</th></tr></thead><tbody>{body}"
        "</tbody></table>"
    )


def run_html(run: WorkflowRun, definition: WorkflowDef, rows: Sequence[StepRow]) -> str:
    refresh = "" if run.status.finished else '<meta http-equiv="refresh" content="2">'
    steps = "".join(
        f'<tr data-path="{escape(r.path)}"><td>{escape(r.path)}</td><td>{escape(r.kind)}</td>'
        f"<td>{escape(r.status.value)}</td><td>{r.attempt or ''}</td>"
        f"<td>{_seconds(r)}</td>"
        f"<td><code>{escape(_shown(r.error if r.error else r.output))}</code></td></tr>"
        for r in sorted(rows, key=lambda r: (r.started_at or 0.0, r.path))
    )
    outcome = ""
    if run.error:
        outcome = f'<p class="error">{escape(run.error)}</p>'
    elif run.status.finished:
        outcome = f"<p>Output: <code>{escape(_shown(run.output))}</code></p>"
    return (
        f'{refresh}<p><a href="{RUNS_PAGE}">← workflow runs</a></p>'
        f'<p id="workflow-run" data-status="{escape(run.status.value)}"><strong>'
        f"{escape(run.workflow)}</strong> · version {escape(run.version)} · "
        f'<span class="run-status">{escape(run.status.value)}</span> · {escape(run.trigger)} · '
        f"started {_when(run.created_at)}</p>"
        f"<p>Input: <code>{escape(_shown(run.input))}</code></p>{outcome}"
        f'<div class="graph">{graph_svg(definition, rows)}</div>{_legend()}'
        '<table id="workflow-steps"><thead><tr><th>step</th><th>kind</th><th>status</th>'
        "<th>attempt</th><th>seconds</th><th>output / error</th></tr></thead>"
        f"<tbody>{steps}</tbody></table>"
    )


def _seconds(r: StepRow) -> str:
    if r.started_at and r.finished_at:
        return f"{r.finished_at - r.started_at:.2f}"
    return ""


class WorkflowConsole:
    def __init__(
        self,
        *,
        workflows: WorkflowService | None,
        authenticate: session.Authenticate,
    ) -> None:
        self._workflows = workflows
        self._authenticate = authenticate

    def routes(self) -> tuple[list[ConsoleRoute], list[ConsoleRoute]]:
        """``(exact routes, prefix routes)``, as ``Console.routes``."""
        return [(RUNS_PAGE, ["GET"], self.runs)], [(RUN_PREFIX, ["GET"], self.run)]

    async def _signed_in(self, ex: Exchange) -> Principal | None:
        try:
            principal = await self._authenticate(session.authorization(ex))
        except AuthError:
            headers = [(b"location", b"/console/login"), (b"cache-control", b"no-store")]
            await ex.respond(303, b"", content_type=_HTML, headers=headers)
            return None
        ex.principal = principal
        authorize(principal, Role.VIEWER, CONSOLE_SCOPE)
        return principal

    async def runs(self, ex: Exchange) -> None:
        principal = await self._signed_in(ex)
        if principal is None:
            return
        found: Sequence[WorkflowRun] = []
        if self._workflows is not None:
            found = await self._workflows.runs(principal.tenant, limit=100)
        html = runs_html(found, configured=self._workflows is not None)
        await self._html(ex, principal, html)

    async def run(self, ex: Exchange) -> None:
        principal = await self._signed_in(ex)
        if principal is None:
            return
        run_id = ex.path[len(RUN_PREFIX) :]
        if self._workflows is None or not run_id or "/" in run_id:
            raise NotFound(f"No console page {ex.path}")
        run, rows = await self._workflows.progress(principal.tenant, run_id)
        try:
            definition = await self._workflows.engine.definition(
                principal.tenant, run.workflow, run.version
            )
        except WayportError as exc:
            raise NotFound(f"the definition of {run.id} is gone: {exc.message}") from exc
        await self._html(ex, principal, run_html(run, definition, rows), arg=run.id)

    async def _html(self, ex: Exchange, principal: Principal, html: str, *, arg: str = "") -> None:
        body = page("workflows", principal, models=[], agents=[], arg=arg, html=html)
        headers = [(b"cache-control", b"no-store"), *SECURITY_HEADERS]
        await ex.respond(200, body, content_type=_HTML, headers=headers)
