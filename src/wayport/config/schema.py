"""The shape of ``wayport.yaml``: pydantic models used once, at load time, and never on the
hot path. ``wayport schema`` prints :func:`json_schema` for editor completion.

    config = WayportConfig.model_validate({"server": {"port": 9000}})
    config.models["smollm2"].deployments[0].name   # -> "smollm2-local" (the embedded default)

The deployment kinds live in :mod:`wayport.config.deployments`.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wayport.config.agents import (
    DEFAULT_AGENT,
    KNOWN_MODELS,
    KNOWN_TOOLS,
    AgentConfig,
    StoreConfig,
    ToolConfig,
    default_agents,
)
from wayport.config.channels import ChannelConfig, OutboxConfig  # channels
from wayport.config.cluster import ClusterConfig, RedisConfig  # scale-out
from wayport.config.deployments import (
    BUILTIN_BACKENDS,
    DEPLOYMENT_TAGS,
    AnthropicDeployment,
    Deployment,
    LlamaCppDeployment,
    OpenAIDeployment,
    OptionalSecret,
    PluginDeployment,
    Section,
    Timeouts,
    backend_tag,
    resolve_path,
)
from wayport.config.limits import LimitsConfig, PriceConfig, price_table  # limits and usage
from wayport.config.releases import ReleasesConfig  # releases
from wayport.config.webhooks import WebhooksConfig
from wayport.config.workflows import WorkflowConfig  # workflows
from wayport.core.agent import AgentSpec
from wayport.core.pricing import PriceTable  # limits and usage
from wayport.core.routing import (
    CircuitPolicy,
    ModelGroup,
    RouterPolicy,
    Strategy,
    WeightedDeployment,
)

__all__ = [
    "BUILTIN_BACKENDS",
    "DEFAULT_AGENT",
    "DEFAULT_DEPLOYMENT",
    "DEFAULT_MODEL",
    "DEPLOYMENT_TAGS",
    "AgentConfig",
    "AnthropicDeployment",
    "CircuitConfig",
    "Deployment",
    "DeploymentRef",
    "LlamaCppDeployment",
    "ModelConfig",
    "OpenAIDeployment",
    "PluginDeployment",
    "RouterConfig",
    "ServerConfig",
    "StoreConfig",
    "TelemetryConfig",
    "Timeouts",
    "ToolConfig",
    "WayportConfig",
    "backend_tag",
    "json_schema",
    "json_schema_text",
]

DEFAULT_DEPLOYMENT = "smollm2-local"
DEFAULT_MODEL = "smollm2"


class ServerConfig(Section):
    """The HTTP listener. ``api_key`` is the admin key; ``WAYPORT_API_KEY`` supplies it when
    the file has none."""

    host: str = Field(
        default="127.0.0.1", min_length=1, description="Bind address; loopback by default."
    )
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port.")
    api_key: OptionalSecret = Field(
        default=None, description="Admin API key (32+ random characters)."
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    metrics: bool = Field(default=True, description="Serve Prometheus metrics on /metrics.")
    metrics_require_auth: bool = True
    access_log: bool = True
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    drain_timeout: float = Field(
        default=30.0, ge=0, description="Seconds SIGTERM waits for in-flight requests and streams."
    )
    # --- network safety (docs/hardening.md) ---
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses/CIDRs whose X-Forwarded-For/-Proto are believed; "
        "none: the peer address is the client.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS (https://app.example.com); none: CORS off.",
    )
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="Private addresses/CIDRs that tools and webhooks may reach (SSRF guard "
        "exceptions); none: only public addresses.",
    )

    @field_validator("trusted_proxies", "outbound_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "*" and (
                not item.startswith(("http://", "https://")) or item.rstrip("/") != item
            ):
                raise ValueError(f"{item!r} is not an origin like https://app.example.com")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class TelemetryConfig(Section):
    """Traces (OpenTelemetry, GenAI conventions) and the console's in-memory charts."""

    traces: bool = Field(
        default=True,
        description="Record spans (HTTP, agent runs, model and tool calls); the console shows "
        "recent traces, and they are exported when otlp_endpoint is set.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318); "
        "spans are posted to <endpoint>/v1/traces.",
    )
    otlp_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent to the collector (credentials)."
    )
    service_name: str = Field(default="wayport", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of traces kept.")
    console: bool = Field(default=True, description="Serve the web console on /console.")
    timeseries_minutes: int = Field(
        default=1440, ge=1, le=10080, description="Minutes of per-minute aggregates kept."
    )


class DeploymentRef(Section):
    name: str = Field(min_length=1)
    weight: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Relative share of traffic; 0: last resort.",
    )


def _ref_from_name(value: object) -> object:
    return {"name": value} if isinstance(value, str) else value


class ModelConfig(Section):
    """A public model name and the deployments that serve it."""

    deployments: list[
        Annotated[
            DeploymentRef,
            BeforeValidator(_ref_from_name, json_schema_input_type=str | DeploymentRef),
        ]
    ] = Field(min_length=1, description="Names, or {name, weight} for weighted routing.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Models tried in order when this one fails."
    )
    context_window_fallbacks: list[str] = Field(
        default_factory=list, description="Models tried when the prompt is too long."
    )

    def group(self, name: str) -> ModelGroup:
        return ModelGroup(
            name=name,
            deployments=tuple(
                WeightedDeployment(name=d.name, weight=d.weight) for d in self.deployments
            ),
            fallbacks=tuple(self.fallbacks),
            context_window_fallbacks=tuple(self.context_window_fallbacks),
        )


class CircuitConfig(Section):
    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open it."
    )
    cooldown: float = Field(default=30.0, ge=0, description="Seconds open before probing again.")
    half_open_probes: int = Field(default=1, ge=1)


class RouterConfig(Section):
    strategy: Strategy = Strategy.WEIGHTED
    max_retries: int = Field(default=2, ge=0, description="Further attempts after the first.")
    backoff_base: float = Field(default=0.1, ge=0)
    backoff_max: float = Field(default=5.0, ge=0)
    timeout: float = Field(
        default=600.0, gt=0, description="Deadline per request, retries included."
    )
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    def policy(self) -> RouterPolicy:
        return RouterPolicy(
            strategy=self.strategy,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            timeout=self.timeout,
            circuit=CircuitPolicy(
                failure_threshold=self.circuit.failure_threshold,
                cooldown=self.circuit.cooldown,
                half_open_probes=self.circuit.half_open_probes,
            ),
        )


def _default_deployments() -> dict[str, Deployment]:
    return {DEFAULT_DEPLOYMENT: LlamaCppDeployment(backend="llamacpp")}


def _default_models() -> dict[str, ModelConfig]:
    return {DEFAULT_MODEL: ModelConfig(deployments=[DeploymentRef(name=DEFAULT_DEPLOYMENT)])}


class WayportConfig(Section):
    """The whole file. Without ``deployments`` and ``models`` the embedded model serves
    ``smollm2``; a file that sets one of the two must set both."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Wayport configuration",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )
    SECTIONS: ClassVar[tuple[str, ...]] = ("deployments", "models")

    server: ServerConfig = Field(default_factory=ServerConfig)
    state_dir: Path = Field(
        default=Path(".wayport"), validate_default=True, description="Where Wayport keeps data."
    )
    deployments: dict[str, Deployment] = Field(default_factory=_default_deployments)
    models: dict[str, ModelConfig] = Field(default_factory=_default_models)
    router: RouterConfig = Field(default_factory=RouterConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    tools: dict[str, ToolConfig] = Field(
        default_factory=dict, description="Tools agents may call, by name."
    )
    agents: dict[str, AgentConfig] = Field(
        default_factory=dict,
        description="Agents by name; none: 'assistant' on the first model.",
    )
    # --- channels ---
    channels: dict[str, ChannelConfig] = Field(
        default_factory=dict, description="Chat platforms and webhooks agents answer on."
    )
    channel_outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    # --- end channels ---
    # --- limits and usage ---
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="Rate limits and budgets per tenant, key, user and agent.",
    )
    pricing: dict[str, PriceConfig] = Field(
        default_factory=dict,
        description="USD per 1M tokens by model name or pattern; overrides the defaults.",
    )
    # --- end limits and usage ---
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)  # run completion webhooks
    # --- scale-out (docs/scaling.md) ---
    redis: RedisConfig = Field(default_factory=RedisConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    # --- end scale-out ---
    workflows: dict[str, WorkflowConfig] = Field(  # workflows
        default_factory=dict, description="Durable multi-step workflows by name."
    )
    releases: ReleasesConfig = Field(  # releases
        default_factory=ReleasesConfig, description="How new agent versions roll out."
    )

    @field_validator("state_dir", mode="before")
    @classmethod
    def _resolve(cls, value: object, info: ValidationInfo) -> object:
        return resolve_path(value, info) or Path(".wayport")

    @model_validator(mode="before")
    @classmethod
    def _both_or_neither(cls, data: object) -> object:
        if isinstance(data, dict):
            given = [s for s in cls.SECTIONS if s in data]
            if len(given) == 1:
                return {**data, next(s for s in cls.SECTIONS if s not in given): {}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _record_names(cls, data: object, info: ValidationInfo) -> object:
        # Agents name models and tools defined elsewhere in the file. Recording those names
        # in this validation's own context lets each agent field check them and report the
        # exact path (and so the line) of a bad reference.
        context = info.context
        if isinstance(data, dict) and isinstance(context, dict):
            models = data.get("models")
            tools = data.get("tools")
            context[KNOWN_MODELS] = (
                [str(k) for k in models] if isinstance(models, dict) else [DEFAULT_MODEL]
            )
            context[KNOWN_TOOLS] = [str(k) for k in tools] if isinstance(tools, dict) else []
        return data

    def groups(self) -> tuple[ModelGroup, ...]:
        return tuple(cfg.group(name) for name, cfg in self.models.items())

    def price_table(self) -> PriceTable:
        """Prices by public model name (``pricing``, else the defaults for the upstream model
        of the group's first deployment; the embedded model is free)."""
        upstream: dict[str, str | None] = {}
        for name, model in self.models.items():
            deployment = self.deployments.get(model.deployments[0].name)
            upstream[name] = getattr(deployment, "model", None)
        return price_table(self.pricing, upstream)

    def agent_specs(self) -> list[AgentSpec]:
        """The runtime definitions of the agents (the default ``assistant`` when the file
        defines none). Raises ``ConfigError`` for an agent naming an MCP server whose tools
        are not listed."""
        agents = self.agents or default_agents(next(iter(self.models), DEFAULT_MODEL))
        return [agent.spec(name, self.tools) for name, agent in agents.items()]

    def secrets(self) -> tuple[str, ...]:
        """Every credential in the configuration, for log redaction."""
        found = [self.server.api_key.get_secret_value()] if self.server.api_key else []
        for deployment in self.deployments.values():
            found.extend(deployment.secrets())
        for channel in self.channels.values():  # channels
            found.extend(channel.secrets())
        if self.store.encryption_keys is not None:  # the whole value and each key in it
            keys = self.store.encryption_keys.get_secret_value()
            found.append(keys)
            found.extend(part.partition(":")[2].strip() for part in keys.split(","))
        for tool in self.tools.values():  # credentials in tool headers and env entries
            found.extend(_tool_secrets(tool.root))
        found.extend(v.get_secret_value() for v in self.telemetry.otlp_headers.values())
        if self.webhooks.secret is not None:
            found.append(self.webhooks.secret.get_secret_value())
        if self.redis.url is not None:  # scale-out: the URL may carry a password
            found.append(self.redis.url.get_secret_value())
        return tuple(dict.fromkeys(found))


def _tool_secrets(fields: object, key: str = "") -> list[str]:
    """Values under ``headers``/``env`` and under keys naming a credential, at any depth."""
    if isinstance(fields, dict):
        return [s for k, v in fields.items() for s in _tool_secrets(v, f"{key}.{k}".lower())]
    if isinstance(fields, list):
        return [s for v in fields for s in _tool_secrets(v, key)]
    if isinstance(fields, str):
        words = ("headers.", "env.", "key", "token", "secret", "password", "authorization")
        return [fields] if any(w in key for w in words) else []
    return []


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``wayport.yaml`` (``wayport schema``)."""
    return WayportConfig.model_json_schema(mode="validation")


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2)
