"""The ``channels:`` and ``channel_outbox:`` sections of ``wayport.yaml``.

    channels:
      support-tg:
        type: telegram                              # webhook, webchat, telegram, slack, …
        agent: support                              # when no binding matches
        credentials: {bot_token: "${TELEGRAM_BOT_TOKEN}", webhook_secret: "${TG_SECRET}"}
        options: {mode: polling}
        dm_policy: pairing                          # open, allowlist, pairing
        allow_from: ["123456"]
        bindings:
          - {peer: "42", agent: vip}
          - {group: "-1001", thread: "7", agent: release-bot, require_mention: false}
    channel_outbox: {max_age: 86400, max_attempts: 12}

Credentials come from the environment through ``${VAR}`` substitution and are redacted from
logs. ``allow_outbound`` lets the channel's client reach addresses the SSRF guard refuses by
default (a platform mirror on the private network, a local fake in tests).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from wayport.config.deployments import Section
from wayport.core.channels import AccessPolicy, Binding, DmPolicy, SessionMode

__all__ = ["BindingConfig", "ChannelConfig", "OutboxConfig", "PairingConfig"]


class BindingConfig(Section):
    agent: str = Field(min_length=1)
    account: str | None = None
    peer: str | None = Field(default=None, description="A sender id.")
    group: str | None = Field(default=None, description="A group chat id.")
    thread: str | None = None
    session: SessionMode = SessionMode.CHANNEL_PEER
    require_mention: bool = True


class PairingConfig(Section):
    ttl: float = Field(default=3600.0, gt=0, description="Seconds a pairing code is valid.")
    max_pending: int = Field(default=3, ge=1, description="Codes waiting at once.")


class ChannelConfig(Section):
    type: str = Field(min_length=1, description="webhook, webchat, telegram, slack, discord, …")
    agent: str | None = Field(default=None, description="Default agent; none: the first one.")
    tenant: str = Field(default="default", min_length=1, max_length=64)
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    session: SessionMode = SessionMode.CHANNEL_PEER
    dm_policy: DmPolicy = DmPolicy.OPEN
    allow_from: list[str] = Field(default_factory=list)
    pairing: PairingConfig = Field(default_factory=PairingConfig)
    bindings: list[BindingConfig] = Field(default_factory=list)
    stream: bool = Field(default=False, description="Show answers growing, by edits.")
    allow_outbound: list[str] = Field(
        default_factory=list, description="Addresses or networks the SSRF guard lets through."
    )

    def secrets(self) -> tuple[str, ...]:
        return tuple(v.get_secret_value() for v in self.credentials.values() if v)

    def plain_credentials(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.credentials.items()}

    def access(self) -> AccessPolicy:
        return AccessPolicy(
            dm=self.dm_policy,
            allow_from=frozenset(self.allow_from),
            pairing_ttl=self.pairing.ttl,
            max_pending=self.pairing.max_pending,
        )

    def binding_specs(self, channel: str) -> tuple[Binding, ...]:
        return tuple(
            Binding(
                agent=b.agent,
                channel=channel,
                account=b.account,
                peer=b.peer,
                group=b.group,
                thread=b.thread,
                session=b.session,
                require_mention=b.require_mention,
            )
            for b in self.bindings
        )


class OutboxConfig(Section):
    max_age: float = Field(default=86400.0, gt=0, description="Seconds before a reply is dropped.")
    max_attempts: int = Field(default=12, ge=1)
    backoff_base: float = Field(default=2.0, gt=0)
    backoff_cap: float = Field(default=300.0, gt=0)
