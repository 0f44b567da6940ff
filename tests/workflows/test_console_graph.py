"""The console's workflow pages: the run list and a run drawn as a graph (server-rendered SVG),
over HTTP on the real server, and in a real browser (the system Chromium, driven by
Playwright): sign in, follow the nav link, open a run waiting for approval, approve it, and
watch the graph turn green as the page reloads itself.

Screenshots go to ``test-artifacts/console/`` (git-ignored); their paths are printed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from test_api import CONFIG, SECRET, served, until

from wayport.core.workflow import parse_workflow
from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow
from wayport.server.console_workflows import STATUS_COLOURS, graph_svg, layout

pytestmark = pytest.mark.anyio
CHROMIUM = os.environ.get("WAYPORT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
ANY_KEY = {"authorization": "Bearer any"}  #: a server without an API key takes any
KEY = "Rk4mWq8ZtN2vXb7LpH5cJy9DgF3sTe6Ua1Oi0Ywn"

DIAMOND = parse_workflow(
    "diamond",
    {
        "steps": [
            {"id": "start", "tool": {"name": "t", "args": {}}},
            {"id": "left", "needs": "start", "tool": {"name": "t", "args": {}}},
            {
                "id": "each",
                "needs": "start",
                "map": {"over": [1, 2], "step": {"tool": {"name": "t", "args": {}}}},
            },
            {"id": "end", "needs": ["left", "each"], "join": {}},
        ]
    },
)


def test_layout_puts_each_step_after_what_it_needs() -> None:
    cells = layout(DIAMOND)
    assert cells == {"start": (0, 0), "left": (1, 0), "each": (1, 1), "end": (2, 0)}


def test_the_graph_colours_steps_by_status_and_escapes_names() -> None:
    rows = [
        StepRow(path="start", step_id="start", kind="tool", status=StepStatus.COMPLETED),
        StepRow(
            path="left",
            step_id="left",
            kind="tool",
            status=StepStatus.FAILED,
            error="<script>alert(1)</script>",
            attempt=2,
        ),
        StepRow(
            path="each[0]", step_id="each", kind="tool", status=StepStatus.COMPLETED, item_index=0
        ),
        StepRow(
            path="each[1]", step_id="each", kind="tool", status=StepStatus.RUNNING, item_index=1
        ),
    ]
    svg = graph_svg(DIAMOND, rows)
    nodes = dict(re.findall(r'data-step="([^"]+)" data-status="([a-z]+)"', svg))
    assert nodes == {
        "start": "completed",
        "left": "failed",
        "each": "pending",
        "end": "pending",
    }
    edges = re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', svg)
    assert sorted(edges) == [
        ("each", "end"),
        ("left", "end"),
        ("start", "each"),
        ("start", "left"),
    ]
    assert STATUS_COLOURS["failed"] in svg and "1/2 items" in svg and "try 2" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg


async def test_pages_over_http(tmp_path: Path, side_effects: Path) -> None:
    text = CONFIG.format(state=tmp_path / "state", secret=SECRET)
    async with served(text) as client:
        run_id = (
            await client.post("/v1/workflows/hello/runs", json={"input": {"name": "<b>Ada"}})
        ).json()["id"]
        await until(client, run_id, "waiting")
        listing = await client.get("/console/workflows", headers=ANY_KEY)
        assert listing.status_code == 200
        assert f'href="/console/workflows/{run_id}"' in listing.text
        assert 'href="/console/workflows" class=current' in listing.text
        assert "content-security-policy" in listing.headers
        shown = await client.get(f"/console/workflows/{run_id}", headers=ANY_KEY)
        assert shown.status_code == 200
        nodes = dict(re.findall(r'data-step="([^"]+)" data-status="([a-z]+)"', shown.text))
        assert nodes == {"greet": "completed", "ok": "waiting", "log": "pending"}
        assert '<meta http-equiv="refresh"' in shown.text  # unfinished: it reloads itself
        assert "<b>Ada" not in shown.text and "&lt;b&gt;Ada" in shown.text
        missing = await client.get("/console/workflows/wfr-nope", headers=ANY_KEY)
        assert missing.status_code == 404
        await client.post(f"/v1/workflow-runs/{run_id}/approve", json={})
        await until(client, run_id, "completed")
        done = await client.get(f"/console/workflows/{run_id}", headers=ANY_KEY)
        assert set(re.findall(r'data-status="([a-z]+)"', done.text)) == {"completed"}
        assert "refresh" not in done.text


async def test_keyed_server_sends_strangers_to_sign_in(tmp_path: Path, side_effects: Path) -> None:
    text = CONFIG.format(state=tmp_path / "state", secret=SECRET)
    text = text.replace("access_log: false", f"api_key: {KEY}, access_log: false", 1)
    async with served(text) as client:
        stranger = await client.get("/console/workflows/wfr-x", follow_redirects=False)
        assert (stranger.status_code, stranger.headers["location"]) == (303, "/console/login")
        wrong = await client.get("/console/workflows", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 303
        ok = await client.get("/console/workflows", headers={"authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and "No workflow runs yet" in ok.text


@pytest.mark.slow
async def test_a_run_as_a_graph_in_the_browser(tmp_path: Path, side_effects: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright, expect

    # each check waits up to 30 s (Playwright's default is 5 s): Chromium and the server
    # share a loaded machine, and the run's page reloads itself every 2 s
    expect.set_options(timeout=30_000)
    text = CONFIG.format(state=tmp_path / "state", secret=SECRET)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with served(text) as client, async_playwright() as pw:
        url = str(client.base_url).rstrip("/")
        started = await client.post("/v1/workflows/hello/runs", json={"input": {"name": "Ada"}})
        run_id = started.json()["id"]
        await until(client, run_id, "waiting")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url + "/console/login")
            await page.fill("#key", "anything")
            await page.click("#sign-in")
            await expect(page).to_have_url(url + "/console")
            await page.click('header nav a[href="/console/workflows"]')
            await expect(page.locator("h1")).to_have_text("Workflows")
            await page.click(f'a[href="/console/workflows/{run_id}"]')
            graph = page.locator("#workflow-graph")
            await expect(graph).to_be_visible()
            waiting = graph.locator('g.step[data-step="ok"]')
            await expect(waiting).to_have_attribute("data-status", "waiting")
            fill = await waiting.locator("rect").get_attribute("fill")
            assert fill == STATUS_COLOURS["waiting"]
            assert await graph.locator("path.edge").count() >= 2
            box = await graph.bounding_box()
            assert box is not None and box["width"] > 300  # drawn, not collapsed
            await page.screenshot(path=str(ARTIFACTS / "workflow-waiting.png"), full_page=True)
            async with httpx.AsyncClient(base_url=url) as api:
                approved = await api.post(f"/v1/workflow-runs/{run_id}/approve", json={})
                assert approved.status_code == 200, approved.text
            # the page reloads itself while the run is unfinished
            run_page = page.locator("#workflow-run")
            await expect(run_page).to_have_attribute("data-status", "completed")
            statuses = await graph.locator("g.step").evaluate_all(
                "nodes => nodes.map(n => n.dataset.status)"
            )
            assert statuses == ["completed", "completed", "completed"]
            await page.screenshot(path=str(ARTIFACTS / "workflow-completed.png"), full_page=True)
            print(f"screenshots: {ARTIFACTS}/workflow-*.png")
        finally:
            await browser.close()
