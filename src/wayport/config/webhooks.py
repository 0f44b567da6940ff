"""The ``webhooks:`` section of ``wayport.yaml``: run completion webhooks.

    webhooks:
      secret: ${WAYPORT_WEBHOOK_SECRET}   # signs every webhook whose run gave no secret
      timeout: 10                         # seconds per delivery attempt

Targets on private or loopback addresses are refused unless listed in
``server.outbound_allow`` (the same SSRF guard as HTTP tools).
"""

from __future__ import annotations

from pydantic import Field

from wayport.config.deployments import OptionalSecret, Section
from wayport.core.webhooks import MAX_ATTEMPTS

__all__ = ["WebhooksConfig"]


class WebhooksConfig(Section):
    secret: OptionalSecret = Field(
        default=None,
        description="Default signing secret (16+ characters) for runs that give none; "
        "default: the WAYPORT_WEBHOOK_SECRET environment variable.",
    )
    timeout: float = Field(default=10.0, gt=0, description="Seconds per delivery attempt.")
    max_attempts: int = Field(
        default=MAX_ATTEMPTS, ge=1, description="Attempts (doubling delays) before giving up."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for finished runs to report."
    )
