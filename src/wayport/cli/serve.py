"""``wayport serve``: the API on uvicorn (uvloop + httptools), JSON logs, a graceful drain.

SIGTERM or SIGINT stops accepting connections, lets in-flight requests and streams finish for
up to ``server.drain_timeout`` seconds, runs the app's shutdown, and exits 0. A second signal
stops waiting.
"""

from __future__ import annotations

import gc
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
import uvicorn
from rich.markup import escape

from wayport import __version__
from wayport.cli.console import EXIT_REFUSED, err, out
from wayport.cli.progress import loading_models
from wayport.config.checks import check_bind
from wayport.config.issues import UnsafeBind
from wayport.config.loader import load_config
from wayport.config.schema import WayportConfig
from wayport.core.errors import ConfigError

log = structlog.get_logger("wayport.serve")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    config_path: Path | None = None
    host: str | None = None  #: overrides ``server.host``
    port: int | None = None  #: overrides ``server.port``


class _Server(uvicorn.Server):
    """uvicorn's server, with two changes: a hook once it listens (to print where), and
    signals that end in a clean exit 0 instead of uvicorn re-raising them after shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_ready: Callable[[int], None],
        on_drain: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._on_drain = on_drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Deliberately not recorded in ``_captured_signals``: uvicorn would raise the signal
        # again after the drain, and the process would die of it instead of exiting 0.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything start-up built (modules, config, loaded models, pools) lives as long as
        # the process: keep it out of the cyclic GC's generations, so the collections that
        # per-request garbage triggers stop re-scanning it (about -20 % CPU per streamed
        # request in the benchmark; docs/benchmarks.md).
        gc.freeze()
        if self.started and not self.should_exit:
            self._on_ready(self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_drain()
        await super().shutdown(sockets)


def serve(options: ServeOptions) -> int:
    """Run until signalled; the exit code (2: refused an unsafe bind)."""
    try:
        # A host from the file is checked by the loader, which can point at its line.
        config = load_config(options.config_path, bind_check=options.host is None)
        host = options.host or config.server.host
        port = options.port if options.port is not None else config.server.port
        check_bind(host, has_key=config.server.api_key is not None)
    except UnsafeBind as exc:
        err().print(f"[bold red]refused:[/] {escape(exc.message)}")
        return EXIT_REFUSED
    except ConfigError as exc:
        err().print(f"[bold red]invalid configuration:[/]\n{escape(exc.message)}")
        return 1

    from wayport.bootstrap import build
    from wayport.telemetry.logging import configure_logging

    logs = configure_logging(config.server.log_level, json=True, secrets=config.secrets())
    try:
        try:
            runtime = build(config)
        except ConfigError as exc:
            err().print(f"[bold red]invalid configuration:[/]\n{escape(exc.message)}")
            return 1
        drain = config.server.drain_timeout
        uv_config = uvicorn.Config(
            runtime.app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,  # the app writes its own access log, as JSON
            log_config=None,  # keep the JSON handlers configure_logging installed
            log_level=config.server.log_level,
            server_header=False,
            # forwarded headers are honoured by the app, only from server.trusted_proxies
            proxy_headers=False,
            timeout_graceful_shutdown=math.ceil(drain),
        )
        with loading_models(runtime.backends) as loaded:  # a bar: deployments ready so far
            server = _Server(
                uv_config,
                on_ready=lambda bound: _ready(config, host, bound, loaded),
                on_drain=lambda: log.info("draining in-flight requests", timeout_s=drain),
            )
            try:
                server.run()
            finally:
                if runtime.tracing is not None:
                    runtime.tracing.shutdown()  # observability: flush spans to the collector
        if not server.started:
            return 3  # uvicorn's STARTUP_FAILURE; it exits itself on most such paths
        return 0
    finally:
        logs.close()


def _ready(config: WayportConfig, host: str, port: int, loaded: Callable[[], None]) -> None:
    loaded()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{port}"
    log.info("listening", url=base, host=host, port=port)
    console = out()
    console.print(f"[bold green]Wayport {__version__}[/] ready on {escape(base)}")
    console.print(f"  API base   {base}/v1")
    console.print(f"  models     {base}/v1/models")
    if config.server.metrics:
        console.print(f"  metrics    {base}/metrics")
    console.print(f"  health     {base}/healthz  {base}/readyz")
    if config.telemetry.console:
        console.print(f"  console    {base}/console")
    console.print(f"  docs       {base}/openapi.json (OpenAPI)")
    console.print(f"  try it     wayport chat --url {base}")
    if host in ("0.0.0.0", "::"):
        console.print(f"  (listening on every interface of this machine: {host})")
    console.file.flush()
