"""Fake chat platforms on loopback, speaking the platforms' real HTTP APIs, for channel tests.

    async with FakePlatforms() as fake:                  # binds 127.0.0.1:0
        options = {"api_base": fake.telegram_base}       # Telegram Bot API: /bot<token>/<method>
        fake.telegram_update(chat_id=7, text="hi")       # queued for getUpdates
        fake.fail("sendMessage", status=502, times=1)     # the next sendMessage fails once
        ...
        fake.calls("sendMessage")                        # [{"chat_id": "7", "text": …}, …]

Served: Telegram (``getMe``, ``setWebhook``, ``getUpdates`` with long polling, ``sendMessage``,
``editMessageText``, which refuses an edit that changes nothing or targets an unknown
message, ``sendChatAction``), the Slack Web API (``auth.test``,
``chat.postMessage``, ``chat.update``; bearer token checked), ``/hook``, a receiver for
Wayport's signed outbound webhooks, and Discord's interaction webhooks, DingTalk's robot send
APIs and Feishu's token and message APIs (``fake_platforms_apps``). Failures answer as the
platform would (Telegram's ``{"ok": false, "error_code": …}``, Slack's ``{"ok": false,
"error": …}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from wayport.testing.fake_platforms_apps import AppPlatforms

__all__ = ["FakePlatforms", "slack_headers", "webhook_headers"]

FAKE_TELEGRAM_TOKEN = "123:TEST"  # noqa: S105 - a fake's own credentials
FAKE_SLACK_TOKEN = "xoxb-test"  # noqa: S105


def slack_headers(secret: str, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
    """The headers Slack signs an Events API request with."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    base = b"v0:" + stamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={digest}",
    }


def slack_event(
    text: str, *, user: str = "U7", channel: str = "D1", ts: str = "1750000000.000100"
) -> bytes:
    """The body of an Events API ``event_callback`` for a direct message, as Slack sends it."""
    event = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "Ev1",
        "event": {
            "type": "message",
            "channel": channel,
            "channel_type": "im",
            "user": user,
            "text": text,
            "ts": ts,
        },
    }
    return json.dumps(event).encode()


def webhook_headers(
    secret: str, body: bytes, *, timestamp: float | None = None, key: str | None = None
) -> dict[str, str]:
    """The headers of a signed request to Wayport's generic webhook channel."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-wayport-timestamp": stamp,
        "x-wayport-signature": f"sha256={digest}",
    }
    if key is not None:
        headers["idempotency-key"] = key
    return headers


class FakePlatforms(AppPlatforms):
    def __init__(
        self, *, telegram_token: str = FAKE_TELEGRAM_TOKEN, slack_token: str = FAKE_SLACK_TOKEN
    ) -> None:
        self.telegram_token = telegram_token
        self.slack_token = slack_token
        self.bot_username = "wayport_bot"
        self.slack_bot_user = "UBOT"
        self.requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.hooks: list[tuple[dict[str, str], bytes]] = []
        #: what each message the bot sent shows now: ``(chat id, message id) -> text``
        self.telegram_texts: dict[tuple[str, int], str] = {}
        self._faults: dict[str, list[int]] = defaultdict(list)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._arrived = asyncio.Event()
        self._delivered = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""
        self._init_apps()  # Discord, DingTalk, Feishu: fake_platforms_apps

    async def __aenter__(self) -> FakePlatforms:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._telegram)
        app.router.add_post("/api/{method}", self._slack)
        app.router.add_post("/hook", self._hook)
        self._app_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def telegram_base(self) -> str:
        return self.base

    @property
    def slack_base(self) -> str:
        return f"{self.base}/api"

    @property
    def hook_url(self) -> str:
        return f"{self.base}/hook"

    # ------------------------------------------------------------------ scripting

    def fail(self, method: str, *, status: int = 502, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` fail with ``status``."""
        self._faults[method] += [status] * times

    def faults_left(self, method: str) -> int:
        """Failures still scripted for ``method`` (each refused call uses one up)."""
        return len(self._faults.get(method, ()))

    def recover(self) -> None:
        """Drop every scripted failure: the platform answers normally again."""
        self._faults.clear()

    def calls(self, method: str) -> list[dict[str, Any]]:
        return list(self.requests[method])

    async def wait_for(self, method: str, count: int = 1, *, timeout: float = 30.0) -> None:
        """Return once ``method`` has been called successfully ``count`` times."""
        async with asyncio.timeout(timeout), self._delivered:
            await self._delivered.wait_for(lambda: len(self.requests[method]) >= count)

    def telegram_update(
        self,
        *,
        chat_id: int,
        text: str,
        sender_id: int | None = None,
        chat_type: str = "private",
        message_id: int | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """Queue an update for ``getUpdates``; also returned, to POST as a webhook."""
        message: dict[str, Any] = {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "from": {"id": sender_id or chat_id, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": chat_id, "type": chat_type},
            "date": int(time.time()),
            "text": text,
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        update = {"update_id": next(self._update_ids), "message": message}
        self._updates.append(update)
        self._arrived.set()
        return update

    # ------------------------------------------------------------------ handlers

    async def _record(self, method: str, params: dict[str, Any]) -> None:
        async with self._delivered:
            self.requests[method].append(params)
            self._delivered.notify_all()

    def _fault(self, method: str) -> int | None:
        faults = self._faults.get(method)
        return faults.pop(0) if faults else None

    async def _telegram(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.telegram_token:
            return _tg_error(401, "Unauthorized")
        params = await request.json() if request.can_read_body else {}
        fault = self._fault(method)
        if fault is not None:
            extra = {"parameters": {"retry_after": 1}} if fault == 429 else {}
            return _tg_error(fault, "Fake failure", **extra)
        if method == "getUpdates":
            await self._record(method, params)
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        if method == "getMe":
            bot = {"id": 1, "is_bot": True, "first_name": "Bot", "username": self.bot_username}
            return web.json_response({"ok": True, "result": bot})
        if method in ("sendMessage", "editMessageText"):
            if not str(params.get("text") or "").strip():
                return _tg_error(400, "Bad Request: message text is empty")
            if len(params["text"]) > 4096:
                return _tg_error(400, "Bad Request: message is too long")
        if method == "editMessageText":
            key = (str(params.get("chat_id")), int(params.get("message_id") or 0))
            if key not in self.telegram_texts:
                return _tg_error(400, "Bad Request: message to edit not found")
            if self.telegram_texts[key] == params["text"]:
                return _tg_error(400, _TG_NOT_MODIFIED)
            self.telegram_texts[key] = params["text"]
        await self._record(method, params)
        if method == "sendMessage":
            sent_id = next(self._message_ids)
            self.telegram_texts[(str(params.get("chat_id")), sent_id)] = params["text"]
            result: Any = {
                "message_id": sent_id,
                "chat": {"id": params.get("chat_id")},
                "date": int(time.time()),
                "text": params.get("text"),
            }
        else:
            result = True
        return web.json_response({"ok": True, "result": result})

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        if offset:
            # Telegram forgets the updates an offset confirms
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._arrived.clear()
            try:
                async with asyncio.timeout(float(params.get("timeout") or 0)):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        return list(self._updates)

    async def _slack(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.headers.get("Authorization") != f"Bearer {self.slack_token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        params = await request.json() if request.can_read_body else {}
        fault = self._fault(method)
        if fault == 429:
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        if fault is not None:
            return web.json_response({"ok": False, "error": "internal_error"}, status=fault)
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": self.slack_bot_user, "team_id": "T1"})
        if method in ("chat.postMessage", "chat.update"):
            if not params.get("channel") or not params.get("text"):
                return web.json_response({"ok": False, "error": "no_text"})
            await self._record(method, params)
            ts = params.get("ts") or f"{time.time():.6f}"
            return web.json_response({"ok": True, "channel": params["channel"], "ts": ts})
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _hook(self, request: web.Request) -> web.Response:
        fault = self._fault("hook")
        if fault is not None:
            return web.Response(status=fault)
        body = await request.read()
        self.hooks.append(({k.lower(): v for k, v in request.headers.items()}, body))
        await self._record("hook", json.loads(body))
        return web.json_response({"ok": True})


_TG_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


def _tg_error(code: int, description: str, **extra: Any) -> web.Response:
    body = {"ok": False, "error_code": code, "description": description, **extra}
    return web.json_response(body, status=code)
