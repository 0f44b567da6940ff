"""The ``wayport`` command. Each command is a thin shell: it parses options and hands over to
``serve``, ``chat``, ``catalog`` or the config package. Heavy modules are imported inside the
commands, so ``wayport version`` and ``wayport --help`` start fast.

    wayport init && wayport check && wayport serve
"""

from __future__ import annotations

import asyncio
import json  # limits and usage
from pathlib import Path
from typing import Annotated

import typer

from wayport import __version__
from wayport.cli.console import err, fail, out
from wayport.core.errors import ConfigError, WayportError

app = typer.Typer(
    name="wayport",
    help="Wayport: an OpenAI-compatible gateway, model router and embedded model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file. Default: ./wayport.yaml if present, else built-in defaults "
        "(the embedded model).",
        envvar="WAYPORT_CONFIG",
        dir_okay=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key for --url.",
        envvar="WAYPORT_API_KEY",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        out().print(f"wayport {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Wayport: an OpenAI-compatible gateway, model router and embedded model.

    Start with [bold]wayport init[/], check with [bold]wayport check[/], run with
    [bold]wayport serve[/], talk to it with [bold]wayport chat[/].
    """


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None,
        typer.Option(
            envvar="WAYPORT_HOST",
            help="Bind address (overrides server.host). Non-loopback needs a key.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="WAYPORT_PORT",
            help="Port (overrides server.port); 0 picks a free one.",
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API until SIGTERM/SIGINT, then drain and exit 0.

    Refuses (exit code 2) to listen beyond loopback without an API key.
    """
    from wayport.cli.serve import ServeOptions
    from wayport.cli.serve import serve as run

    raise typer.Exit(run(ServeOptions(config_path=config, host=host, port=port)))


@app.command()
def chat(
    url: Annotated[
        str | None,
        typer.Option(help="A running server (e.g. http://127.0.0.1:8080); default: in process."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to talk to; default: the first.")
    ] = None,
    api_key: ApiKeyOption = None,
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="A system prompt for the session.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Longest answer, in tokens; default: the model's.")
    ] = None,
    config: ConfigOption = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", "-a", help="Talk to this agent; the server keeps the conversation."
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(help="With --agent: resume this session id; default: a new session."),
    ] = None,
) -> None:
    """Chat in the terminal; tokens print as they arrive.

    Reads lines from stdin (so it works piped); [bold]/exit[/] or end of input quits. Without
    --url the models run in this process, from the configuration. With --agent the session id
    is printed; pass it to --session to carry on later, even after a restart.
    """
    from wayport.cli.chat import ChatOptions
    from wayport.cli.chat import chat as run

    options = ChatOptions(
        url=url,
        model=model,
        api_key=api_key,
        system=system,
        max_tokens=max_tokens,
        config_path=config,
        agent=agent,
        session=session,
    )
    if agent is not None and (model is not None or system is not None):
        fail("--agent talks to an agent: its model and instructions come from its definition")
    if session is not None and agent is None:
        fail("--session needs --agent")
    try:
        code = run(options)
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")
    except WayportError as exc:
        fail(exc.message)
    raise typer.Exit(code)


@app.command()
def models(
    url: Annotated[
        str | None, typer.Option(help="List the models of a running server instead.")
    ] = None,
    api_key: ApiKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """List the models clients can ask for, and what serves them."""
    from wayport.cli.catalog import models_table, remote_models_table
    from wayport.config.loader import load_config

    try:
        if url:
            table = asyncio.run(remote_models_table(url, api_key=api_key))
        else:
            table = models_table(load_config(config, bind_check=False))
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")
    except WayportError as exc:
        fail(exc.message)
    out().print(table)


@app.command()
def check(
    file: Annotated[
        Path | None,
        typer.Argument(help="File to check; default ./wayport.yaml, else the built-in defaults."),
    ] = None,
) -> None:
    """Validate a configuration and summarise it (exit code 1 when invalid)."""
    from wayport.cli.catalog import config_tables, summary
    from wayport.config.loader import find_config, load_config

    try:
        found = find_config(file)
        config = load_config(found)
    except ConfigError as exc:
        fail(exc.message)
    name = str(found) if found is not None else "built-in defaults (no wayport.yaml here)"
    console = out()
    console.print(f"[green]✓[/] {name}: valid, {summary(config)}")
    for table in config_tables(config):
        console.print(table)


@app.command()
def init(
    path: Annotated[
        Path, typer.Argument(help="Where to write the file (a folder gets wayport.yaml).")
    ] = Path("wayport.yaml"),
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")] = (
        False
    ),
) -> None:
    """Write a commented starter configuration (the embedded model, examples for others)."""
    from wayport.config.starter import write_starter

    try:
        written = write_starter(path, force=force)
    except ConfigError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    out().print(f"[green]✓[/] wrote {written}")
    err().print(f"next: wayport check {written} && wayport serve --config {written}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of wayport.yaml (for editor completion)."""
    from wayport.config.schema import json_schema_text

    typer.echo(json_schema_text())


@app.command()
def version() -> None:
    """Print the version."""
    out().print(f"wayport {__version__}")


# BEGIN security parts 6-9: doctor, privacy, encryption at rest
@app.command()
def doctor(config: ConfigOption = None) -> None:
    """Audit a configuration for unsafe settings (exit code 1 when any is high)."""
    from wayport.cli.doctor import doctor as run

    raise typer.Exit(run(config))


def _privacy_commands() -> None:
    from wayport.cli.privacy import privacy_app, store_app

    app.add_typer(privacy_app, name="privacy")
    app.add_typer(store_app, name="store")


_privacy_commands()
# END security parts 6-9

# BEGIN security parts 1, 2, 5: keys and the audit log
from wayport.cli.audit import audit_app  # noqa: E402 - typer only; commands import lazily
from wayport.cli.keys import keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
# END security parts 1, 2, 5

# deployment artefacts (scale-out issue)
from wayport.cli.deploy import deploy_app  # noqa: E402 - typer only; commands import lazily

app.add_typer(deploy_app, name="deploy")


# BEGIN workflows: wayport runs
@app.command()
def runs(
    run_id: Annotated[str | None, typer.Argument(help="One run: show its steps.")] = None,
    url: Annotated[
        str, typer.Option(envvar="WAYPORT_URL", help="The running server.")
    ] = "http://127.0.0.1:8080",
    api_key: ApiKeyOption = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status (waiting, failed …).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many runs to list.")] = 20,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="With a run id: redraw until it finishes.")
    ] = False,
) -> None:
    """List workflow runs, or show one run's progress step by step (live with --watch)."""
    from wayport.cli.runs import show_runs

    try:
        code = asyncio.run(
            show_runs(
                url,
                api_key=api_key,
                run_id=run_id,
                workflow=workflow,
                status=status,
                limit=limit,
                watch=watch,
            )
        )
    except WayportError as exc:
        fail(exc.message)
    raise typer.Exit(code)


# END workflows


# BEGIN limits and usage
@app.command()
def usage(
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by", "-g", help="model, agent, key, user, tenant, session, run, kind or day."
        ),
    ] = "model",
    since: Annotated[
        str | None, typer.Option(help="From this time: epoch seconds or ISO 8601 (UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to (not including) this time.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    records: Annotated[
        bool, typer.Option("--records", help="Export every record instead of totals.")
    ] = False,
    tenant: Annotated[str, typer.Option(help="Tenant (reading the store directly).")] = "default",
    url: Annotated[
        str | None, typer.Option(help="Ask a running server (its key's tenant) instead.")
    ] = None,
    api_key: ApiKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Usage and cost from the ledger: a table with totals, or CSV/JSON for spreadsheets."""
    from wayport.cli import usage as u
    from wayport.config.loader import load_config
    from wayport.core.usage import GROUPS
    from wayport.server.usage_api import time_param

    if format not in ("table", "csv", "json"):
        fail("--format must be table, csv or json")
    if group_by not in GROUPS:
        fail(f"--group-by must be one of {', '.join(GROUPS)}")
    if records and (url or format == "table"):
        fail("--records exports from the store: give --format csv or json, without --url")
    try:
        if url:
            body = asyncio.run(u.remote_totals(url, api_key, group_by, since, until))
            rows, total = body["data"], body["total"]
        else:
            query = {k: [v] for k, v in (("since", since), ("until", until)) if v}
            start, end = time_param(query, "since"), time_param(query, "until")
            cfg = load_config(config, bind_check=False)
            if records:
                with u.progress_bar() as bar:
                    found = asyncio.run(u.local_records(cfg, tenant, start, end, bar))
                data = u.record_rows(found)
                columns = list(data[0]) if data else []
                text = u.rows_csv(data, columns) if format == "csv" else json.dumps(data, indent=2)
                u.write(text + ("\n" if format == "json" else ""), output)
                return
            rows, total = u.totals_body(
                asyncio.run(u.local_totals(cfg, tenant, group_by, start, end))
            )
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")
    except WayportError as exc:
        fail(exc.message)
    if format == "table" and output is None:
        out().print(u.table(rows, total, group_by))
    elif format == "csv" or format == "table":
        u.write(u.rows_csv([*rows, total], u.COLUMNS), output)
    else:
        payload = {"group_by": group_by, "data": rows, "total": total}
        u.write(json.dumps(payload, indent=2) + "\n", output)


# END limits and usage


# BEGIN releases: wayport release …, wayport eval SUITE.yaml
from wayport.cli.eval import eval_command  # noqa: E402 - typer only; commands import lazily
from wayport.cli.release import release_app  # noqa: E402

app.add_typer(release_app, name="release")
app.command("eval")(eval_command)
# END releases
