"""The Discord, DingTalk and Feishu/Lark parts of ``FakePlatforms``: their APIs as the real
ones answer, and requests signed the way those platforms sign them (see each adapter's
module for the wire format).

    body, headers = fake.discord_interaction(text="hi")        # signed with the fake's key
    body, headers = fake.dingtalk_callback(text="hi")          # with a session webhook
    body, headers = fake.feishu_event(text="hi")               # encrypted and signed
    fake.calls("discord.original") / "discord.followup" / "dingtalk.send" / "feishu.send"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FEISHU_APP_ID = "cli_fake"
FEISHU_APP_SECRET = "feishu-app-secret"  # noqa: S105 - a fake's own credentials
FEISHU_VERIFICATION = "feishu-verification-token"
FEISHU_ENCRYPT_KEY = "feishu-encrypt-key"
DINGTALK_SECRET = "dingtalk-app-secret"  # noqa: S105
DINGTALK_ROBOT_TOKEN = "robot-token"  # noqa: S105
DINGTALK_ROBOT_SECRET = "SECrobot-secret"  # noqa: S105


def dingtalk_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def feishu_encrypt(plain: bytes, key: str) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    iv = os.urandom(16)
    aes = hashlib.sha256(key.encode()).digest()
    encryptor = Cipher(algorithms.AES(aes), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()


class AppPlatforms:
    """Mixed into ``FakePlatforms``, which provides ``base``, ``_record`` and ``_fault``."""

    base: str
    _record: Callable[[str, dict[str, Any]], Awaitable[None]]
    _fault: Callable[[str], int | None]

    def _init_apps(self) -> None:
        self.discord_key = Ed25519PrivateKey.generate()
        self.discord_app = "100200300"
        self.discord_tokens: set[str] = set()
        self.dingtalk_sessions: set[str] = set()
        self.feishu_token_ttl = 7200
        self.feishu_tokens: set[str] = set()
        self._feishu_uuids: dict[str, str] = {}
        self._app_ids = itertools.count(1)

    def _app_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/discord/api/v10/webhooks/{app}/{token}", self._discord)
        app.router.add_route(
            "*", "/discord/api/v10/webhooks/{app}/{token}/messages/{mid}", self._discord
        )
        app.router.add_post("/robot/sendBySession", self._dingtalk)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._lark_token)
        app.router.add_post("/open-apis/im/v1/messages", self._lark_send)

    @property
    def discord_base(self) -> str:
        return f"{self.base}/discord/api/v10"

    @property
    def discord_public_key(self) -> str:
        raw = self.discord_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return raw.hex()

    # ------------------------------------------------------------------ inbound requests

    def discord_sign(self, body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self.discord_key.sign(stamp.encode() + body).hex()
        return {
            "content-type": "application/json",
            "x-signature-ed25519": signature,
            "x-signature-timestamp": stamp,
        }

    def discord_interaction(
        self, *, text: str | None = None, user: str = "u-1", guild: str | None = None, kind: int = 2
    ) -> tuple[bytes, dict[str, str]]:
        """A slash command ``/ask prompt:<text>`` (or a PING with ``kind=1``), signed."""
        n = next(self._app_ids)
        token = f"itoken-{n}-{os.urandom(4).hex()}"
        self.discord_tokens.add(token)
        body: dict[str, Any] = {
            "id": f"9000{n}",
            "application_id": self.discord_app,
            "type": kind,
            "token": token,
            "version": 1,
            "channel_id": f"c-{guild or user}",
        }
        if kind == 2:
            body["data"] = {
                "id": "77",
                "name": "ask",
                "type": 1,
                "options": [{"name": "prompt", "type": 3, "value": text or ""}],
            }
        who = {"id": user, "username": "ada", "global_name": "Ada"}
        if guild is not None:
            body["guild_id"] = guild
            body["member"] = {"user": who, "roles": []}
        else:
            body["user"] = who
        raw = json.dumps(body).encode()
        return raw, self.discord_sign(raw)

    def dingtalk_callback(
        self,
        *,
        text: str,
        sender: str = "staff-1",
        group: bool = False,
        secret: str = DINGTALK_SECRET,
        session_ttl: float = 3600.0,
        timestamp_ms: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        n = next(self._app_ids)
        session = f"sess-{n}-{os.urandom(4).hex()}"
        self.dingtalk_sessions.add(session)
        now_ms = int(time.time() * 1000)
        body = {
            "msgtype": "text",
            "text": {"content": f" {text}"},
            "msgId": f"msg{n}",
            "createAt": now_ms,
            "conversationType": "2" if group else "1",
            "conversationId": f"cid-{'group' if group else sender}",
            "senderId": f"$:LWCP_v1:${sender}",
            "senderStaffId": sender,
            "senderNick": "Ada",
            "chatbotUserId": "$:LWCP_v1:$bot",
            "isInAtList": True,
            "sessionWebhook": f"{self.base}/robot/sendBySession?session={session}",
            "sessionWebhookExpiredTime": now_ms + int(session_ttl * 1000),
        }
        stamp = str(timestamp_ms if timestamp_ms is not None else now_ms)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "timestamp": stamp,
            "sign": dingtalk_sign(secret, stamp),
        }
        return json.dumps(body).encode(), headers

    def feishu_event(
        self,
        *,
        text: str,
        sender: str = "ou_user1",
        chat: str = "oc_chat1",
        group: bool = False,
        encrypt: bool = True,
        token: str = FEISHU_VERIFICATION,
        event_id: str | None = None,
        timestamp: float | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        n = next(self._app_ids)
        event = {
            "schema": "2.0",
            "header": {
                "event_id": event_id or f"ev-{n}",
                "event_type": "im.message.receive_v1",
                "create_time": str(int(time.time() * 1000)),
                "token": token,
                "app_id": FEISHU_APP_ID,
                "tenant_key": "tk-1",
            },
            "event": {
                "sender": {
                    "sender_id": {"open_id": sender, "union_id": f"on_{sender}"},
                    "sender_type": "user",
                    "tenant_key": "tk-1",
                },
                "message": {
                    "message_id": f"om_{n}",
                    "chat_id": chat,
                    "chat_type": "group" if group else "p2p",
                    "message_type": "text",
                    "content": json.dumps({"text": text}),
                    "create_time": str(int(time.time() * 1000)),
                },
            },
        }
        return self.feishu_request(event, encrypt=encrypt, timestamp=timestamp)

    def feishu_request(
        self, payload: dict[str, Any], *, encrypt: bool = True, timestamp: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """``payload`` as Feishu sends it: encrypted and signed, or plain."""
        plain = json.dumps(payload).encode()
        if not encrypt:
            return plain, {"content-type": "application/json"}
        body = json.dumps({"encrypt": feishu_encrypt(plain, FEISHU_ENCRYPT_KEY)}).encode()
        stamp = str(int(time.time() if timestamp is None else timestamp))
        nonce = os.urandom(8).hex()
        signature = hashlib.sha256((stamp + nonce + FEISHU_ENCRYPT_KEY).encode() + body).hexdigest()
        headers = {
            "content-type": "application/json",
            "x-lark-request-timestamp": stamp,
            "x-lark-request-nonce": nonce,
            "x-lark-signature": signature,
        }
        return body, headers

    # ------------------------------------------------------------------ handlers

    async def _discord(self, request: web.Request) -> web.Response:
        token, mid = request.match_info["token"], request.match_info.get("mid")
        name = "discord.followup" if mid is None else "discord.original"
        if mid is not None and mid != "@original":
            name = "discord.edit"
        if request.match_info["app"] != self.discord_app or token not in self.discord_tokens:
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if (request.method, mid is None) not in (("POST", True), ("PATCH", False)):
            return web.json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)
        fault = self._fault(name)
        if fault == 429:
            body = {"message": "You are being rate limited.", "retry_after": 1.0, "global": False}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        if fault is not None:
            return web.json_response({"message": "fake failure", "code": 0}, status=fault)
        params = await request.json()
        content = params.get("content") or ""
        if not content or len(content) > 2000:
            errors = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
            body = {"message": "Invalid Form Body", "code": 50035, "errors": errors}
            return web.json_response(body, status=400)
        await self._record(name, params)
        message_id = mid if mid not in (None, "@original") else f"m{next(self._app_ids)}"
        return web.json_response({"id": message_id, "content": content, "type": 0})

    async def _dingtalk(self, request: web.Request) -> web.Response:
        if request.path.endswith("/sendBySession"):
            if request.query.get("session") not in self.dingtalk_sessions:
                return web.json_response({"errcode": 300001, "errmsg": "session invalid"})
            name = "dingtalk.send"
        else:
            stamp = request.query.get("timestamp", "")
            expected = dingtalk_sign(DINGTALK_ROBOT_SECRET, stamp)
            if request.query.get("access_token") != DINGTALK_ROBOT_TOKEN:
                return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
            if not hmac.compare_digest(request.query.get("sign", ""), expected):
                return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
            name = "dingtalk.robot_send"
        fault = self._fault(name)
        if fault == 429:
            return web.json_response(
                {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            )
        if fault is not None:
            return web.Response(status=fault)
        params = await request.json()
        kind = params.get("msgtype")
        text = (params.get("text") or {}).get("content") or (params.get("markdown") or {}).get(
            "text"
        )
        if kind not in ("text", "markdown") or not text:
            return web.json_response({"errcode": 40035, "errmsg": "missing parameter"})
        if len(text.encode()) > 20_000:
            return web.json_response({"errcode": 460101, "errmsg": "message too long"})
        await self._record(name, params)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _lark_token(self, request: web.Request) -> web.Response:
        params = await request.json()
        if (params.get("app_id"), params.get("app_secret")) != (FEISHU_APP_ID, FEISHU_APP_SECRET):
            return web.json_response({"code": 10014, "msg": "app secret invalid"}, status=400)
        token = f"t-{os.urandom(8).hex()}"
        self.feishu_tokens.add(token)
        await self._record("feishu.token", params)
        ttl = self.feishu_token_ttl
        body = {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": ttl}
        return web.json_response(body)

    def feishu_revoke_tokens(self) -> None:
        """Every tenant access token handed out so far becomes invalid."""
        self.feishu_tokens.clear()

    async def _lark_send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.feishu_tokens:
            body = {"code": 99991663, "msg": "Invalid access token for authorization."}
            return web.json_response(body, status=400)
        if request.query.get("receive_id_type") != "chat_id":
            return web.json_response({"code": 99992402, "msg": "field validation failed"})
        fault = self._fault("feishu.send")
        if fault == 429:
            return web.json_response({"code": 99991400, "msg": "request trigger frequency limit"})
        if fault is not None:
            return web.json_response({"code": 1, "msg": "fake failure"}, status=fault)
        raw = await request.read()
        if len(raw) > 150 * 1024:  # a text message's request body: 150 KB at most
            body = {"code": 230025, "msg": "The length of the message content reaches its limit."}
            return web.json_response(body, status=400)
        params = json.loads(raw)
        content = json.loads(params.get("content") or "{}")
        if params.get("msg_type") != "text" or not content.get("text"):
            return web.json_response({"code": 230001, "msg": "invalid message content"})
        uuid = params.get("uuid")
        if uuid in self._feishu_uuids:  # Feishu deduplicates a retried send by uuid
            return web.json_response(
                {"code": 0, "msg": "success", "data": {"message_id": self._feishu_uuids[uuid]}}
            )
        await self._record("feishu.send", params)
        message_id = f"om_sent{next(self._app_ids)}"
        if uuid:
            self._feishu_uuids[uuid] = message_id
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": message_id}})
