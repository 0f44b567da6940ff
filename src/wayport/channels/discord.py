"""Discord through its interactions endpoint: slash commands, message commands, buttons and
modals arrive as signed HTTP requests; answers go back through the interaction's webhook.

    channels:
      discord:
        type: discord
        credentials: {public_key: "${DISCORD_PUBLIC_KEY}"}    # the application's, in hex
        options: {api_base: "https://discord.com/api/v10"}

Every request is checked: ``X-Signature-Ed25519`` is the Ed25519 signature, by the
application's key, of ``X-Signature-Timestamp`` followed by the raw body (and the timestamp
must be within 5 minutes). A ``PING`` (type 1) is answered ``PONG`` (type 1); a command,
component or modal is stored, then acknowledged with a deferred response (type 5, "thinking…"),
and the reply replaces it: the first piece by ``PATCH /webhooks/{application}/{token}/messages/
@original``, the others by follow-up messages (``POST /webhooks/{application}/{token}``). The
interaction token is valid for 15 minutes; mentions in replies are never pinged. A message's
id is the interaction's id.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wayport.channels.base import (
    TOLERANCE,
    ChannelBase,
    ChannelContext,
    check_timestamp,
    decode_json,
    ok_json,
    refused,
)
from wayport.core.channels import (
    ChatKind,
    Delivered,
    Inbound,
    Outbound,
    WebhookAnswer,
    WebhookRequest,
)
from wayport.core.errors import BackendRejected, ConfigError, InvalidRequest

SIGNATURE = "x-signature-ed25519"
TIMESTAMP = "x-signature-timestamp"

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
PONG, DEFERRED_CHANNEL_MESSAGE, AUTOCOMPLETE_RESULT = 1, 5, 8
_CHAT_INPUT, _MESSAGE_COMMAND = 1, 3
_NO_PINGS: dict[str, list[str]] = {"parse": []}


class DiscordChannel(ChannelBase):
    max_chars = 2000
    can_edit = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        try:
            raw = bytes.fromhex(ctx.credential("public_key"))
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise ConfigError(
                f"channels.{ctx.name}: credentials.public_key is not an Ed25519 key in hex"
            ) from exc
        self._api = str(ctx.option("api_base", "https://discord.com/api/v10")).rstrip("/")

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        stamp = request.headers.get(TIMESTAMP)
        try:
            signature = bytes.fromhex(request.headers.get(SIGNATURE, ""))
            self._key.verify(signature, (stamp or "").encode() + request.body)
        except (ValueError, InvalidSignature):
            raise refused() from None
        sent_at = check_timestamp(stamp, self._now())
        body = decode_json(request.body)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_payload")
        kind = body.get("type")
        if kind == PING:
            return ok_json({"type": PONG})
        if kind == AUTOCOMPLETE:
            return ok_json({"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}})
        if kind not in (APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT):
            raise InvalidRequest(f"unknown interaction type {kind!r}", code="invalid_payload")
        answer = ok_json({"type": DEFERRED_CHANNEL_MESSAGE}, messages=(self._parse(body),))
        # Discord does not redeliver an interaction: each signature is accepted once, so a
        # captured request cannot be replayed (within the timestamp tolerance, or after)
        return replace(answer, replay_key=signature.hex(), replay_until=sent_at + TOLERANCE)

    def _parse(self, body: dict[str, Any]) -> Inbound:
        member = body.get("member") or {}
        user = member.get("user") or body.get("user") or {}
        interaction, token = body.get("id"), body.get("token")
        app, channel = body.get("application_id"), body.get("channel_id")
        if not interaction or not token or not app or not user.get("id"):
            raise InvalidRequest(
                "the interaction lacks an id, token or user", code="invalid_payload"
            )
        guild = body.get("guild_id")
        channel = channel or (body.get("channel") or {}).get("id") or user["id"]
        return Inbound(
            channel=self.name,
            message_id=str(interaction),
            sender=str(user["id"]),
            sender_name=user.get("global_name") or user.get("username"),
            chat=str(channel),
            chat_kind=ChatKind.GROUP if guild else ChatKind.DIRECT,
            account=str(guild) if guild else None,
            text=_text(body),
            mentioned=True,  # an interaction is addressed to the application
            reply={"application_id": str(app), "token": str(token)},
        )

    async def send(self, message: Outbound) -> Delivered:
        app, token = message.reply.get("application_id"), message.reply.get("token")
        if not isinstance(app, str) or not isinstance(token, str):
            raise BackendRejected(
                f"channel {self.name!r}: no interaction to answer", code="channel_rejected"
            )
        hook = f"{self._api}/webhooks/{app}/{token}"
        payload = {"content": message.text, "allowed_mentions": _NO_PINGS}
        if message.edit is not None:
            response = await self.post_json(
                f"{hook}/messages/{message.edit}", payload, method="PATCH"
            )
        elif message.part == 0:
            response = await self.post_json(f"{hook}/messages/@original", payload, method="PATCH")
        else:
            response = await self.post_json(f"{hook}?wait=true", payload)
        answer = decode_json(response.body) if response.body else {}
        found = answer.get("id") if isinstance(answer, dict) else None
        return Delivered(platform_id=str(found) if found else message.edit)


def _text(body: dict[str, Any]) -> str:
    data = body.get("data") or {}
    kind = body.get("type")
    if kind == MESSAGE_COMPONENT:
        values = data.get("values") or []
        return " ".join([str(data.get("custom_id") or ""), *map(str, values)]).strip()
    if kind == MODAL_SUBMIT:
        return "\n".join(_modal_values(data.get("components") or []))
    if data.get("type") == _MESSAGE_COMMAND:
        target = ((data.get("resolved") or {}).get("messages") or {}).get(data.get("target_id"))
        content = (target or {}).get("content") or ""
        return f"/{data.get('name')}\n{content}".strip()
    values = list(_option_values(data.get("options") or []))
    return " ".join(values) if values else f"/{data.get('name') or ''}"


def _option_values(options: list[Any]) -> list[str]:
    """The values of a chat-input command's options, subcommands flattened."""
    found: list[str] = []
    for option in options:
        if not isinstance(option, dict):
            continue
        if "value" in option:
            found.append(str(option["value"]))
        found += _option_values(option.get("options") or [])
    return found


def _modal_values(components: list[Any]) -> list[str]:
    found: list[str] = []
    for row in components:
        if isinstance(row, dict):
            if isinstance(row.get("value"), str):
                found.append(row["value"])
            found += _modal_values(row.get("components") or [])
    return found
