"""Terminal output shared by the commands: results on stdout, problems on stderr, spinners
only where a person is watching (a TTY), never in pipes or logs.

    with busy("Loading models"):
        await runtime.start()
    with busy("Starting") as done:
        ...; done()  # stop the spinner, keep going
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

#: Exit codes beyond 0 and 1.
EXIT_REFUSED = 2  #: refused to start unsafely (a non-loopback bind without a key)
EXIT_INTERRUPTED = 130


def out() -> Console:
    # A console per call: CliRunner and tests swap sys.stdout, so it is looked up each time.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    err().print(f"[bold red]error:[/] {escape(message)}", emoji=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def busy(message: str) -> Iterator[Callable[[], None]]:
    """A spinner on stderr while the block runs, when stderr is a terminal. The block gets a
    function that stops the spinner early (a server that is ready but keeps running)."""
    console = err()
    if not console.is_terminal:
        yield lambda: None
        return
    with console.status(message, spinner="dots") as status:
        yield status.stop
