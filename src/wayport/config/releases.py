"""The ``releases:`` section of ``wayport.yaml``: how each agent's new versions roll out.

    releases:
      interval: 5                       # seconds between reconciler passes
      notify: https://hooks.example.com/releases   # every transition, signed
      notify_secret: ${WAYPORT_RELEASE_SECRET}
      agents:
        support:
          kind: canary
          steps:
            - set_weight: 10
            - analysis: {conditions: ["error_rate <= 0.05"], min_requests: 50, interval: 60}
            - set_weight: 50
            - pause: {seconds: 600}

A strategy is parsed by ``wayport.core.release_codec.strategy_from_dict``; an agent with no
entry rolls out with a plain canary that promotes at the first pass.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from wayport.config.deployments import OptionalSecret, Section
from wayport.core.release import Strategy
from wayport.core.release_codec import strategy_from_dict

__all__ = ["ReleasesConfig"]


class ReleasesConfig(Section):
    interval: float = Field(default=5.0, gt=0, description="Seconds between reconciler passes.")
    notify: str | None = Field(
        default=None, description="A URL told of every rollout transition (POST, signed)."
    )
    notify_secret: OptionalSecret = Field(
        default=None, description="Signs the notifications (Wayport-Signature)."
    )
    agents: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The rollout strategy per agent."
    )

    @field_validator("agents")
    @classmethod
    def _parses(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, raw in value.items():
            strategy_from_dict(raw, where=f"releases.agents.{name}")  # ValueError: the field
        return value

    def strategies(self) -> dict[str, Strategy]:
        return {name: strategy_from_dict(raw) for name, raw in self.agents.items()}
