"""``wayport chat``: a terminal chat that prints tokens as they arrive.

Against a running server (``--url``, the OpenAI HTTP API) or in process (the gateway built from
the configuration, no HTTP). Lines come from stdin, so it works piped::

    printf 'Hello\\n/exit\\n' | wayport chat
    wayport chat --url http://127.0.0.1:8080 --system "Answer briefly."
    wayport chat --agent assistant                       # a durable session, id printed
    wayport chat --agent assistant --session sess-…      # resume it (also after a restart)

Talking to a model, the conversation is kept here for the process; talking to an agent, the
server keeps it in the session (``"model": "agent/NAME"`` with the session id), so only each
new line is sent. ``/exit`` or end of input quits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TextIO

from rich.markup import escape

from wayport.cli.console import busy, err
from wayport.cli.remote import RemoteApi
from wayport.core.agent import RunFinished, TextDelta
from wayport.core.errors import AuthError, WayportError
from wayport.core.ids import new_id
from wayport.core.session import RunStatus
from wayport.core.types import ChatRequest, Message

if TYPE_CHECKING:
    from wayport.bootstrap import Runtime

EXIT_COMMANDS = frozenset({"/exit", "/quit"})
AGENT_PREFIX = "agent/"  #: ``"model": "agent/NAME"`` runs the agent


class ChatSession(Protocol):
    """Where the turns go: a remote server or the in-process gateway."""

    async def __aenter__(self) -> ChatSession: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def default_model(self) -> str: ...

    def stream(
        self, model: str, messages: Sequence[Message], params: Mapping[str, object]
    ) -> AsyncIterator[str]: ...

    def stream_agent(self, agent: str, text: str, *, session_id: str) -> AsyncIterator[str]:
        """One turn of the agent's session; the server holds the history."""
        ...


class RemoteChat:
    def __init__(self, url: str, *, api_key: str | None) -> None:
        self._api = RemoteApi(url, api_key=api_key)

    async def __aenter__(self) -> RemoteChat:
        await self._api.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._api.__aexit__(exc_type, exc, tb)

    async def default_model(self) -> str:
        models = await self._api.models()
        if not models:
            raise WayportError(f"{self._api.base} lists no models; pass --model")
        return models[0][0]

    def stream(
        self, model: str, messages: Sequence[Message], params: Mapping[str, object]
    ) -> AsyncIterator[str]:
        return self._api.stream_chat(model, messages, params)

    def stream_agent(self, agent: str, text: str, *, session_id: str) -> AsyncIterator[str]:
        # ``metadata.session_id`` is the body's equivalent of the X-Wayport-Session header
        metadata = {"metadata": {"session_id": session_id}}
        return self._api.stream_chat(
            AGENT_PREFIX + agent, [{"role": "user", "content": text}], metadata
        )


class LocalChat:
    """The gateway in this process, built from the configuration as ``serve`` would."""

    def __init__(self, config_path: Path | None) -> None:
        self._config_path = config_path
        self._runtime: Runtime | None = None

    async def __aenter__(self) -> LocalChat:
        # Imported here: ``wayport chat --url`` never needs the model stack.
        from wayport.bootstrap import build
        from wayport.config.loader import load_config

        config = load_config(self._config_path, bind_check=False)
        runtime = build(config)
        with busy("Loading models…"):
            await runtime.start()
        self._runtime = runtime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await runtime.aclose()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("use LocalChat as an async context manager")
        return self._runtime

    async def default_model(self) -> str:
        return self.runtime.gateway.models()[0]

    async def stream(
        self, model: str, messages: Sequence[Message], params: Mapping[str, object]
    ) -> AsyncIterator[str]:
        request = ChatRequest(model=model, messages=list(messages), stream=True, params=params)
        async for chunk in self.runtime.gateway.stream(request):
            if chunk.content:
                yield chunk.content

    async def stream_agent(self, agent: str, text: str, *, session_id: str) -> AsyncIterator[str]:
        events = self.runtime.agents.chat_stream(
            AGENT_PREFIX + agent, [{"role": "user", "content": text}], session_id=session_id
        )
        async for event in events:
            if isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, RunFinished) and event.run.status is not RunStatus.COMPLETED:
                raise WayportError(f"the run {event.run.status.value}: {event.run.error or ''}")


class LineReader:
    """Reads stdin one line at a time on a daemon thread: the event loop keeps running while
    the user types, and an interrupted prompt does not hold the process open at exit."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    async def readline(self) -> str | None:
        """The next line without its newline; ``None`` at end of input."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        def deliver(line: str) -> None:
            if not fut.done():
                fut.set_result(line)

        def read() -> None:
            try:
                line = self._stream.readline()
            except (OSError, ValueError):  # stdin closed under us: treat as end of input
                line = ""
            with contextlib.suppress(RuntimeError):  # the loop is gone after an interrupt
                loop.call_soon_threadsafe(deliver, line)

        threading.Thread(target=read, name="wayport-chat-stdin", daemon=True).start()
        line = await fut
        return line.rstrip("\r\n") if line else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatOptions:
    url: str | None = None
    model: str | None = None
    api_key: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    config_path: Path | None = None
    agent: str | None = None  #: talk to this agent (a durable session) instead of a model
    session: str | None = None  #: resume this session (with ``agent``); default: a new one


async def run_chat(options: ChatOptions, *, stdin: TextIO, stdout: TextIO) -> int:
    """Chat until ``/exit`` or end of input; 1 if any turn failed, else 0."""
    session: ChatSession = (
        RemoteChat(options.url, api_key=options.api_key)
        if options.url
        else LocalChat(options.config_path)
    )
    interactive = stdin.isatty()
    params = {"max_tokens": options.max_tokens} if options.max_tokens else {}
    failed = False
    if options.agent is not None:
        async with session:
            return await _agent_chat(session, options.agent, options, stdin, stdout)
    async with session:
        model = options.model or await session.default_model()
        history: list[Message] = []
        if options.system:
            history.append({"role": "system", "content": options.system})
        if interactive:
            err().print(f"Chatting with [bold]{escape(model)}[/]; /exit or Ctrl-D quits.")
        reader = LineReader(stdin)
        while True:
            if interactive:
                stdout.write("you> ")
                stdout.flush()
            line = await reader.readline()
            if line is None or line.strip() in EXIT_COMMANDS:
                break
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            pieces: list[str] = []
            try:
                async for piece in session.stream(model, history, params):
                    pieces.append(piece)
                    stdout.write(piece)
                    stdout.flush()
            except AuthError as exc:
                err().print(f"[red]error:[/] {escape(exc.message)}")
                return 1
            except WayportError as exc:
                if pieces:
                    stdout.write("\n")
                err().print(f"[red]error:[/] {escape(exc.message)}")
                history.pop()
                failed = True
                continue
            stdout.write("\n")
            stdout.flush()
            history.append({"role": "assistant", "content": "".join(pieces)})
    return 1 if failed else 0


async def _agent_chat(
    session: ChatSession, agent: str, options: ChatOptions, stdin: TextIO, stdout: TextIO
) -> int:
    session_id = options.session or new_id("sess")
    # On stderr, so piped output holds only answers; printed first, so even an interrupted
    # chat can be resumed.
    err().print(
        f"Agent [bold]{escape(agent)}[/], session [bold]{escape(session_id)}[/] "
        f"(resume: wayport chat --agent {escape(agent)} --session {escape(session_id)})"
    )
    interactive = stdin.isatty()
    reader = LineReader(stdin)
    failed = False
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = await reader.readline()
        if line is None or line.strip() in EXIT_COMMANDS:
            break
        if not line.strip():
            continue
        wrote = False
        try:
            async for piece in session.stream_agent(agent, line, session_id=session_id):
                wrote = True
                stdout.write(piece)
                stdout.flush()
        except AuthError as exc:
            err().print(f"[red]error:[/] {escape(exc.message)}")
            return 1
        except WayportError as exc:
            if wrote:
                stdout.write("\n")
            err().print(f"[red]error:[/] {escape(exc.message)}")
            failed = True
            continue
        stdout.write("\n")
        stdout.flush()
    return 1 if failed else 0


def chat(options: ChatOptions) -> int:
    try:
        return asyncio.run(run_chat(options, stdin=sys.stdin, stdout=sys.stdout))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130
