"""The ``limits:`` and ``pricing:`` sections of ``wayport.yaml``.

limits:
  default_max_tokens: 4096      # reserved for a request that sets no max_tokens
  tenants:
    "*": {rpm: 600, spend_per_month: 100}   # every tenant
    acme: {spend_per_day: 5}                # … and this one, on top
  keys:
    "*": {rpm: 60, tpm: 100000}
  agents:
    support: {concurrent_runs: 4}
pricing:                         # USD per million tokens; by public model name or pattern
  qwen: {input: 0.4, output: 1.2}
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from wayport.config.deployments import Section
from wayport.core.limits import Limits
from wayport.core.pricing import Price, PriceTable

ANY = "*"


class LimitValues(Section):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute (prompt + completion)."
    )
    concurrent_runs: int | None = Field(default=None, ge=1, description="Agent runs in flight.")
    spend_per_day: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Dollars per UTC day."
    )
    spend_per_month: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Dollars per UTC month."
    )

    def limits(self) -> Limits:
        return Limits(
            rpm=self.rpm,
            tpm=self.tpm,
            concurrent_runs=self.concurrent_runs,
            spend_per_day=self.spend_per_day,
            spend_per_month=self.spend_per_month,
        )


class LimitsConfig(Section):
    """Rate limits and budgets per tenant, API key (by key id), end user and agent. ``"*"``
    applies to every one; a named entry overrides it field by field. Nothing set: no limits."""

    default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Completion tokens reserved for a request that does not set max_tokens.",
    )
    tenants: dict[str, LimitValues] = Field(default_factory=dict)
    keys: dict[str, LimitValues] = Field(default_factory=dict)
    users: dict[str, LimitValues] = Field(default_factory=dict)
    agents: dict[str, LimitValues] = Field(default_factory=dict)

    def by_scope(self) -> dict[str, dict[str, Limits]]:
        """``{"tenant": {"*": Limits, "acme": Limits}, "key": …}`` for the limits service."""
        sections = {
            "tenant": self.tenants,
            "key": self.keys,
            "user": self.users,
            "agent": self.agents,
        }
        return {
            scope: {name: values.limits() for name, values in section.items()}
            for scope, section in sections.items()
            if section
        }


class PriceConfig(Section):
    input: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M prompt tokens.")
    output: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M completion tokens.")


def price_table(
    pricing: Mapping[str, PriceConfig], upstream: Mapping[str, str | None]
) -> PriceTable:
    """The prices by public model name: ``pricing`` first (by public name or pattern), then
    the defaults for the upstream model of the group's first deployment (``upstream``: public
    name to upstream model, ``None`` for the embedded model, which is free)."""
    configured = {name: Price(input=p.input, output=p.output) for name, p in pricing.items()}
    defaults = PriceTable.default()
    table = defaults.with_prices(configured)
    resolved: dict[str, Price] = {}
    for public, model in upstream.items():
        mine = PriceTable(configured).find(public)
        if mine is not None:
            resolved[public] = mine
        elif model is not None:
            found = table.find(model)
            resolved[public] = found if found is not None else table.price(public)
        else:
            resolved[public] = Price()
    return table.with_prices(resolved)
