"""The ``wayport`` command. Each command is a thin shell: it parses options and hands over to
``serve``, ``chat``, ``catalog`` or the config package. Heavy modules are imported inside the
commands, so ``wayport version`` and ``wayport --help`` start fast.

    wayport init && wayport check && wayport serve
"""

from __future__ import annotations

import asyncio
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
