"""The web console at ``/console``: server-rendered pages, a small hand-written script and
stylesheet served from this package (no CDN: it works offline), and the JSON routes of
``wayport.server.console_api``.

    console = Console(api=console_api, authenticate=auth.authenticate, chat=openai.chat_completions,
                      models=gateway.models, agents=agent_names, auth_enabled=True)
    routes = console.routes()          # (path, methods, handler) for the app's route table

Signing in (``wayport.server.console.session``) puts the API key in an ``HttpOnly``,
``SameSite=Strict`` cookie; each request is authenticated with it as with the header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from wayport.core.errors import AuthError, NotFound
from wayport.core.identity import Principal, Role
from wayport.server.auth import authorize
from wayport.server.console import session
from wayport.server.console.pages import login_page, page
from wayport.server.console_api import API_PREFIX, ConsoleApi
from wayport.server.http import Exchange

__all__ = ["CHAT_PATH", "CONSOLE_PREFIX", "SECURITY_HEADERS", "Console", "ConsoleRoute"]

#: A console route: path (or path prefix), methods, handler.
ConsoleRoute = tuple[str, list[str], Callable[[Exchange], Awaitable[None]]]

CONSOLE_PREFIX = "/console"
STATIC_PREFIX = "/console/static/"
CHAT_PATH = "/console/api/chat"
#: What an API key limited to scopes must list to use the console.
CONSOLE_SCOPE = "console"
_HTML = b"text/html; charset=utf-8"
_STATIC_TYPES = {
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
}
#: Pages load only this origin's script and styles; nothing inline, no frames. Every console
#: response that renders (pages, static files, the workflow pages) sends these.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would send Origin: null
    (b"x-frame-options", b"DENY"),
)
_PAGES = {
    "/console": "dashboard",
    "/console/": "dashboard",
    "/console/chat": "chat",
    "/console/agents": "agents",
    "/console/releases": "releases",
    "/console/sessions": "sessions",
    "/console/usage": "usage",
    "/console/audit": "audit",
}
_PAGE_PREFIXES = {"/console/sessions/": "sessions", "/console/traces/": "trace"}
#: Pages that need more than reading.
_ROLES = {"audit": Role.ADMIN}


def _static(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or name.rpartition(".")[2] not in _STATIC_TYPES:
        return None
    found = resources.files(__package__).joinpath("static", name)
    return found.read_bytes() if found.is_file() else None


class Console:
    def __init__(
        self,
        *,
        api: ConsoleApi,
        authenticate: session.Authenticate,
        chat: Callable[[Exchange], Awaitable[None]],
        models: Callable[[], list[str]],
        agents: Callable[[str], Awaitable[list[str]]],  #: a tenant's agents by name
        auth_enabled: bool,
    ) -> None:
        self._api = api
        self._authenticate = authenticate
        self._chat = chat
        self._models = models
        self._agents = agents
        self._auth_enabled = auth_enabled
        self._static: dict[str, bytes] = {}

    def routes(self) -> tuple[list[ConsoleRoute], list[ConsoleRoute]]:
        """``(exact routes, prefix routes)``: path, methods, handler. None of them is
        ``secured`` in the app's sense: the console authenticates by itself (header or
        cookie)."""
        exact: list[ConsoleRoute] = [(path, ["GET"], self.page) for path in _PAGES]
        exact += [
            ("/console/login", ["GET", "POST"], self.login),
            ("/console/logout", ["POST"], self.logout),
            (CHAT_PATH, ["POST"], self.chat),
        ]
        prefixes: list[ConsoleRoute] = [
            (STATIC_PREFIX, ["GET"], self.static),
            (API_PREFIX, ["GET"], self.api),
            *((prefix, ["GET"], self.page) for prefix in _PAGE_PREFIXES),
        ]
        return exact, prefixes

    async def _principal(self, ex: Exchange) -> Principal:
        principal = await self._authenticate(session.authorization(ex))
        ex.principal = principal
        return principal

    async def page(self, ex: Exchange) -> None:
        name, arg = _PAGES.get(ex.path), ""
        if name is None:
            for prefix, candidate in _PAGE_PREFIXES.items():
                if ex.path.startswith(prefix):
                    name, arg = candidate, ex.path[len(prefix) :]
                    break
        if name is None:
            raise NotFound(f"No console page {ex.path}")
        try:
            principal = await self._principal(ex)
        except AuthError:
            await self._redirect(ex, "/console/login")
            return
        authorize(principal, _ROLES.get(name, Role.VIEWER), CONSOLE_SCOPE)
        agents = await self._agents(principal.tenant)
        html = page(name, principal, models=self._models(), agents=agents, arg=arg)
        await self._html(ex, 200, html)

    async def login(self, ex: Exchange) -> None:
        if ex.method == "GET":
            await self._html(ex, 200, login_page(auth_enabled=self._auth_enabled))
            return
        session.check_same_origin(ex, require_header=False)
        body = await ex.read_body(4096)
        try:
            key = session.login_key(body)
            ex.principal = await self._authenticate(b"Bearer " + key.encode("ascii"))
        except AuthError:
            html = login_page(error="That API key was not accepted.", auth_enabled=True)
            await self._html(ex, 401, html)
            return
        await self._redirect(ex, "/console", session.set_cookie(ex, key))

    async def logout(self, ex: Exchange) -> None:
        session.check_same_origin(ex, require_header=False)
        await self._redirect(ex, "/console/login", session.clear_cookie())

    async def api(self, ex: Exchange) -> None:
        principal = await self._principal(ex)
        audit = ex.path.startswith(API_PREFIX + "audit")
        authorize(principal, Role.ADMIN if audit else Role.VIEWER, CONSOLE_SCOPE)
        await self._api.handle(ex, principal)

    async def chat(self, ex: Exchange) -> None:
        """The web chat: an OpenAI chat completion (streamed), made with the console's key."""
        session.check_same_origin(ex, require_header=ex.authorization is None)
        principal = await self._principal(ex)
        authorize(principal, Role.USER, "chat")  # what /v1/chat/completions asks
        await self._chat(ex)

    async def static(self, ex: Exchange) -> None:
        name = ex.path[len(STATIC_PREFIX) :]
        body = self._static.get(name)
        if body is None:
            found = _static(name)
            if found is None:
                raise NotFound(f"No console file {name!r}")
            body = self._static[name] = found
        ctype = _STATIC_TYPES[name.rpartition(".")[2]]
        headers = [(b"cache-control", b"no-cache"), *SECURITY_HEADERS]
        await ex.respond(200, body, content_type=ctype, headers=headers)

    async def _html(self, ex: Exchange, status: int, html: bytes) -> None:
        headers = [(b"cache-control", b"no-store"), *SECURITY_HEADERS]
        await ex.respond(status, html, content_type=_HTML, headers=headers)

    async def _redirect(self, ex: Exchange, location: str, *extra: tuple[bytes, bytes]) -> None:
        headers = [(b"location", location.encode()), (b"cache-control", b"no-store"), *extra]
        await ex.respond(303, b"", content_type=_HTML, headers=headers)
