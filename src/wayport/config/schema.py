"""The shape of ``wayport.yaml``: pydantic models used once, at load time, and never on the
hot path. ``wayport schema`` prints :func:`json_schema` for editor completion.

    config = WayportConfig.model_validate({"server": {"port": 9000}})
    config.models["smollm2"].deployments[0].name   # -> "smollm2-local" (the embedded default)

The deployment kinds live in :mod:`wayport.config.deployments`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
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
from wayport.core.agent import AgentSpec
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

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


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
    store: StoreConfig = Field(default_factory=StoreConfig)
    tools: dict[str, ToolConfig] = Field(
        default_factory=dict, description="Tools agents may call, by name."
    )
    agents: dict[str, AgentConfig] = Field(
        default_factory=dict,
        description="Agents by name; none: 'assistant' on the first model.",
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
        return tuple(dict.fromkeys(found))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``wayport.yaml`` (``wayport schema``)."""
    return WayportConfig.model_json_schema(mode="validation")


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2)
