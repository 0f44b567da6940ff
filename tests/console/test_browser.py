"""The console in a real browser (the system Chromium, driven by Playwright), on a real server
with the embedded model: sign in, chat (the reply streams in), see the request with its tokens
and its trace on the dashboard, and watch the releases page pick up a new agent version.

Screenshots go to ``test-artifacts/console/`` (git-ignored); their paths are printed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import httpx
import pytest
from tests.console.conftest import AUTH, KEY, served

CHROMIUM = os.environ.get("WAYPORT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.anyio, pytest.mark.model, pytest.mark.slow]


def embedded_config(state: Path) -> str:
    """No deployments: the embedded SmolLM2 serves ``smollm2`` and the ``assistant`` agent."""
    return f"server:\n  api_key: {KEY}\nstate_dir: {state}\n"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


async def test_sign_in_chat_dashboard_trace_and_releases(tmp_path: Path, artifacts: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright, expect

    # each check waits up to 30 s (Playwright's default is 5 s): the pages poll every few
    # seconds, and Chromium, the server and the embedded model share a loaded machine
    expect.set_options(timeout=30_000)
    async with served(embedded_config(tmp_path)) as s, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            shots: list[Path] = []

            async def shot(name: str) -> None:
                path = artifacts / f"{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            # Sign in: the console sends a stranger to the login form.
            await page.goto(s.url + "/console")
            await expect(page).to_have_url(s.url + "/console/login")
            await page.fill("#key", "wrong-key-that-is-not-accepted")
            await page.click("#sign-in")
            await expect(page.locator(".error")).to_contain_text("not accepted")
            await page.fill("#key", KEY)
            await page.click("#sign-in")
            await expect(page).to_have_url(s.url + "/console")
            await expect(page.locator("header .who")).to_have_text("default · owner")
            cookie = next(c for c in await page.context.cookies() if c["name"] == "wayport_console")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert await page.evaluate("document.cookie") == ""  # out of the scripts' reach
            await shot("1-dashboard-empty")

            # Chat with the embedded model; count the updates of the reply as it streams in.
            await page.goto(s.url + "/console/chat")
            await page.select_option("#chat-model", "smollm2")
            await page.fill("#chat-input", "Count from one to twenty in words.")
            await page.evaluate(
                """() => {
                  window.updates = 0;  // changes of the reply's text, one per chunk read
                  const inReply = (node) =>
                    (node.nodeType === 1 ? node : node.parentElement).closest('.content');
                  new MutationObserver((records) => {
                    if (records.some((r) => inReply(r.target))) window.updates += 1;
                  }).observe(document.getElementById('chat-log'),
                             {subtree: true, childList: true, characterData: true});
                }"""
            )
            await page.click("#chat-send")
            reply = page.locator(".msg.assistant").last
            await expect(reply).to_have_attribute("data-done", "1", timeout=120_000)
            text = await reply.locator(".content").text_content()
            assert text and text.strip()
            assert await page.evaluate("window.updates") >= 3  # streamed, not one final write
            await expect(reply.locator(".meta")).to_contain_text(" out")
            await shot("2-chat")

            # The dashboard shows that request, its tokens and a link to its trace.
            await page.goto(s.url + "/console")
            row = page.locator("#requests tr.request", has_text="/console/api/chat").first
            await expect(row).to_be_visible()
            tokens_out = int(await row.locator(".tokens-out").text_content() or "0")
            assert tokens_out > 0
            chart = page.locator('svg.chart[data-series="requests"]')
            await expect(chart).to_have_attribute("data-total", "1")
            await shot("3-dashboard")
            await row.locator("a").click()
            await expect(page.locator("#trace")).to_contain_text("chat smollm2")
            await expect(page.locator("#trace")).to_contain_text("POST /console/api/chat")
            await expect(page.locator("#trace")).to_contain_text("gen_ai.usage.output_tokens")
            await shot("4-trace")

            # The releases page follows the agents' versions live (no reload).
            await page.goto(s.url + "/console/releases")
            live = page.locator("#release-assistant code.live")
            agents = s.runtime.agents
            before = agents.catalog.get("assistant")
            await expect(live).to_have_text(before.version)
            after = dataclasses.replace(before, instructions="Answer in one short sentence.")
            agents.catalog.put(after)
            await expect(live).to_have_text(after.version)
            await expect(page.locator("#release-assistant .versions")).to_contain_text(
                before.version[:12]
            )
            # A rollout started through the API shows up with its progress, live.
            async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as api:
                started = await api.post(
                    "/v1/releases",
                    json={"agent": "assistant", "spec": {"instructions": "Be brief."}},
                )
                assert started.status_code in (200, 201), started.text
            rollouts = page.locator("#release-assistant .rollouts")
            await expect(rollouts).to_contain_text("answers")
            await shot("5-releases")
            for path in shots:
                print(f"screenshot: {path}")
        finally:
            await browser.close()
