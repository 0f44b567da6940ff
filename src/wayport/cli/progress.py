"""Progress bars for long operations (model loading, exports, eval and benchmark runs), on
stderr and only where a person is watching (a terminal); in pipes, logs and tests they print
nothing.

    with progress_bar("Exporting", total=len(rows)) as advance:
        for row in rows:
            write(row)
            advance()

    with loading_models(runtime.backends):   # one step per deployment, as each becomes ready
        server.run()
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from typing import Protocol, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from wayport.cli.console import err

T = TypeVar("T")


class _Ready(Protocol):
    def ready(self) -> bool: ...


class Advance(Protocol):
    """What ``progress_bar`` hands its block: count steps done, optionally retitle the bar."""

    def __call__(self, steps: int = 1, *, description: str | None = None) -> None: ...


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # stdout carries the command's data (an export piped to a file): never through the bar
        redirect_stdout=False,
    )


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None = None, *, console: Console | None = None
) -> Iterator[Advance]:
    """A bar while the block runs; the block gets ``advance(steps=1, *, description=None)``.
    ``total=None``: the count so far, with no end in sight."""
    console = console if console is not None else err()
    if not console.is_terminal:
        yield _ignore
        return
    with _progress(console) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1, *, description: str | None = None) -> None:
            if description is None:
                bar.advance(task, steps)
            else:
                bar.update(task, advance=steps, description=description)

        yield advance


async def track(
    items: AsyncIterable[T],
    description: str,
    total: int | None = None,
    *,
    console: Console | None = None,
) -> AsyncIterator[T]:
    """``items``, with a bar advancing as each one passes (an export's lines, say)."""
    with progress_bar(description, total, console=console) as advance:
        async for item in items:
            yield item
            advance(1)


@contextlib.contextmanager
def loading_models(
    backends: Mapping[str, _Ready], *, console: Console | None = None, every: float = 0.2
) -> Iterator[Callable[[], None]]:
    """A bar of the deployments ready so far, while they load (in the server's lifespan, on
    another thread); the block gets a function that ends the bar (the server is ready)."""
    console = console if console is not None else err()
    if not console.is_terminal or not backends:
        yield _done
        return
    stop = threading.Event()
    with _progress(console) as bar:
        task = bar.add_task("Loading models…", total=len(backends))

        def watch() -> None:
            while not stop.wait(every):
                bar.update(task, completed=sum(1 for b in backends.values() if b.ready()))

        watcher = threading.Thread(target=watch, name="wayport-load-progress", daemon=True)
        watcher.start()

        def finish() -> None:
            if not stop.is_set():
                stop.set()
                bar.update(task, completed=len(backends))
                bar.stop()

        try:
            yield finish
        finally:
            stop.set()
            watcher.join()


def _ignore(steps: int = 1, *, description: str | None = None) -> None:
    pass


def _done() -> None:
    pass
