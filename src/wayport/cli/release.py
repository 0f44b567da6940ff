"""``wayport release …``: versions and rollouts on a running server (``/v1/agents/{name}/
versions``, ``/v1/releases``), as a deployer (changes) or a viewer (reads)::

    wayport release list support                     # the versions of agent "support"
    wayport release show support 3f2a9c1b7d4e
    wayport release diff support 3f2a9c1b7d4e 9e1d0c2b4a7f
    wayport release create support --file candidate.yaml --strategy canary.yaml
    wayport release status support                   # a live view; --once prints it once
    wayport release promote support                  # or abort, rollback

``--file`` holds the changes to the agent (``instructions``, ``model``, ``params``,
``tools``), or ``--candidate`` names a stored version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from wayport.cli.console import fail, out

release_app = typer.Typer(help="Agent versions and rollouts on a running server.")

UrlOption = Annotated[str, typer.Option(envvar="WAYPORT_URL", help="The running server.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="WAYPORT_API_KEY", help="API key.", show_default=False),
]


def _call(url: str, api_key: str | None, method: str, path: str, body: Any = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers=headers, timeout=30.0
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        fail(f"{response.status_code}: {message}")
    return response.json()


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {path}: {exc}")


@release_app.command("list")
def list_versions(
    agent: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None
) -> None:
    """The stored versions of AGENT, oldest first."""
    found = _call(url, api_key, "GET", f"/v1/agents/{agent}/versions")
    table = Table("version", "created")
    for item in found["data"]:
        table.add_row(
            item["version"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item["created_at"]))
        )
    out().print(table)


@release_app.command()
def show(
    agent: str, version: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None
) -> None:
    """One version's definition, as JSON."""
    found = _call(url, api_key, "GET", f"/v1/agents/{agent}/versions/{version}")
    out().print_json(json.dumps(found["spec"]))


@release_app.command()
def diff(
    agent: str, a: str, b: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None
) -> None:
    """The fields that differ between versions A and B."""
    found = _call(url, api_key, "GET", f"/v1/agents/{agent}/versions/{a}/diff/{b}")
    table = Table("field", a, b)
    for name, (left, right) in found["changes"].items():
        table.add_row(name, json.dumps(left), json.dumps(right))
    out().print(table)


@release_app.command()
def create(
    agent: str,
    file: Annotated[Path | None, typer.Option(help="YAML: changes to the agent.")] = None,
    candidate: Annotated[str | None, typer.Option(help="A stored version.")] = None,
    strategy: Annotated[Path | None, typer.Option(help="YAML: the rollout strategy.")] = None,
    url: UrlOption = "http://127.0.0.1:8080",
    api_key: KeyOption = None,
) -> None:
    """Begin a rollout of a new version of AGENT."""
    if (file is None) == (candidate is None):
        fail("give exactly one of --file and --candidate")
    body: dict[str, Any] = {"agent": agent}
    if file is not None:
        body["spec"] = _yaml(file)
    else:
        body["candidate"] = candidate
    if strategy is not None:
        body["strategy"] = _yaml(strategy)
    made = _call(url, api_key, "POST", "/v1/releases", body)
    out().print(f"rollout of {made['candidate']} began: {made['phase']}, weight {made['weight']}%")


def _command(agent: str, command: str, url: str, api_key: str | None) -> None:
    done = _call(url, api_key, "POST", f"/v1/releases/{agent}/{command}")
    out().print(f"{agent}: {done['phase']}, stable {done['stable']}, weight {done['weight']}%")


@release_app.command()
def promote(
    agent: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None
) -> None:
    """Resume a pause, pass the current step, or switch (blue-green, A/B, shadow)."""
    _command(agent, "promote", url, api_key)


@release_app.command()
def abort(agent: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None) -> None:
    """Withdraw the candidate: all traffic back to stable."""
    _command(agent, "abort", url, api_key)


@release_app.command()
def rollback(
    agent: str, url: UrlOption = "http://127.0.0.1:8080", api_key: KeyOption = None
) -> None:
    """After a promotion: back to the previous version at once."""
    _command(agent, "rollback", url, api_key)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def status_view(status: dict[str, Any]) -> Group:
    """The status as rich tables: the rollout, its checks, the two versions side by side."""
    state = status["state"]
    head = Table("agent", "kind", "phase", "stable", "candidate", "weight", "mirror", "step")
    head.add_row(
        status["agent"],
        state["kind"],
        state["phase"],
        state["stable"],
        str(state["candidate"]),
        f"{state['weight']}%",
        f"{state['mirror']}%",
        str(state["step"]),
    )
    checks = Table("check", "candidate", "stable", "holds", "verdict", title="checks")
    for c in status["checks"]:
        checks.add_row(
            c["check"], _fmt(c["candidate"]), _fmt(c["stable"]), _fmt(c["holds"]), c["verdict"]
        )
    signals = Table("signal", "candidate", "stable", title="signals")
    for name, pair in status["comparison"].items():
        signals.add_row(name, _fmt(pair["candidate"]), _fmt(pair["stable"]))
    reason = state.get("reason") or ""
    return Group(head, checks, signals, f"reason: {reason}" if reason else "")


@release_app.command()
def status(
    agent: str,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit.")] = False,
    every: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    url: UrlOption = "http://127.0.0.1:8080",
    api_key: KeyOption = None,
) -> None:
    """Weights, checks and their values: a live view (Ctrl-C ends it)."""
    path = f"/v1/releases/{agent}"
    if once:
        out().print(status_view(_call(url, api_key, "GET", path)))
        return
    with Live(status_view(_call(url, api_key, "GET", path)), console=out()) as live:
        try:
            while True:
                time.sleep(every)
                live.update(status_view(_call(url, api_key, "GET", path)))
        except KeyboardInterrupt:
            return
