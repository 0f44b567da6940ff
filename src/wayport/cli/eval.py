"""``wayport eval SUITE.yaml --version V``: run an eval suite against one version of an agent,
in this process on the configured store and models; the result is stored, so a rollout's
``eval`` step sees its score.

    name: smoke
    agent: support
    judge: smollm2                 # the model grading rubrics (default: the first model)
    cases:
      - input: "What is 2 + 2?"
        assert: [{contains: "4"}, {latency_ms: 20000}]
      - input: "Reply with JSON"
        assert: [{json_schema: {type: object}}, {rubric: "valid JSON, nothing else"}]
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from wayport.cli.console import fail, out
from wayport.core.errors import ConfigError, WayportError
from wayport.core.session import DEFAULT_TENANT


def eval_command(
    suite: Annotated[Path, typer.Argument(help="The suite (YAML).", exists=True, dir_okay=False)],
    version: Annotated[
        str | None, typer.Option(help="The agent version (default: the configured one).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Configuration file.", envvar="WAYPORT_CONFIG"),
    ] = None,
    tenant: Annotated[
        str, typer.Option(help="The tenant the version belongs to.")
    ] = DEFAULT_TENANT,
    min_score: Annotated[
        float | None,
        typer.Option(help="Exit 1 when the score is below this (default: any case failing)."),
    ] = None,
) -> None:
    """Run an eval suite against an agent version and store the result; exit 1 when it
    fails."""
    import yaml
    from rich.progress import MofNCompleteColumn, Progress

    from wayport.config.loader import load_config
    from wayport.core.evals import parse_suite

    try:
        parsed = parse_suite(yaml.safe_load(suite.read_text()))
        cfg = load_config(config, bind_check=False)
    except (ValueError, OSError, yaml.YAMLError) as exc:
        fail(f"invalid suite {suite}: {exc}")
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")

    async def main() -> Any:
        from wayport.bootstrap import build
        from wayport.service.evals import EvalService

        runtime = build(cfg)
        assert runtime.releases is not None
        await runtime.start()
        try:
            judge = parsed.judge or next(iter(cfg.models), "smollm2")
            evals = EvalService(releases=runtime.releases, judge=runtime.gateway, judge_model=judge)
            columns = (*Progress.get_default_columns(), MofNCompleteColumn())
            with Progress(*columns, console=out()) as progress:
                task = progress.add_task(f"{parsed.name}", total=len(parsed.cases))

                def advance(case: Any, ok: bool) -> None:
                    mark = "[green]pass[/]" if ok else "[red]fail[/]"
                    progress.console.print(f"{mark} {case.name}")
                    progress.advance(task)

                return await evals.run(tenant, parsed, version=version, progress=advance)
        finally:
            await runtime.aclose()

    try:
        result = asyncio.run(main())
    except WayportError as exc:
        fail(exc.message)
    out().print(
        f"{parsed.name} on {result.agent} {result.version}: score {result.score:.2f} "
        f"({sum(r['passed'] for r in result.results)}/{len(result.results)} cases)"
    )
    if result.score < (1.0 if min_score is None else min_score):
        raise typer.Exit(1)  # the result is stored all the same
