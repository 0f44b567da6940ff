"""The ``store:``, ``tools:`` and ``agents:`` sections of ``wayport.yaml``.

    agents:
      support:
        model: smollm2                      # a model under models:
        instructions_file: prompts/support.md
        tools: [get_weather]                # names under tools:
        limits: {max_steps: 6}
    tools:
      get_weather: {type: python, function: "myapp.tools:get_weather"}

``AgentConfig.spec(name)`` turns an entry into the runtime's ``AgentSpec``; ``ToolConfig.entry()``
into what ``ToolRegistry.from_specs`` takes. References (an agent's model and tools) are checked
while the file is validated, so a typo is reported with its file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, RootModel, ValidationInfo, field_validator, model_validator

from wayport.config.deployments import OptionalSecret, Section, resolve_path
from wayport.core.agent import AgentSpec, ContextPolicy, Limits, QueueMode, SessionScope
from wayport.core.errors import ConfigError
from wayport.runtime.tools.mcp import McpServerConfig
from wayport.runtime.tools.registry import ToolEntry, parse_entry

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_INSTRUCTIONS",
    "KNOWN_MODELS",
    "KNOWN_TOOLS",
    "AgentConfig",
    "ContextConfig",
    "LimitsConfig",
    "StoreConfig",
    "ToolConfig",
    "default_agents",
    "tool_names",
]

DEFAULT_AGENT = "assistant"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant. Answer clearly and briefly; say so when you do not know."
)
#: Validation-context keys under which ``WayportConfig`` records the names an agent may use.
KNOWN_MODELS = "wayport.known_models"
KNOWN_TOOLS = "wayport.known_tools"


class StoreConfig(Section):
    url: str | None = Field(
        default=None,
        description="null: SQLite file in state_dir; postgresql+asyncpg://… for Postgres.",
    )
    # --- privacy and encryption at rest (docs/privacy.md) ---
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Delete sessions (and their messages, runs, steps) idle this many days; "
        "null: keep forever.",
    )
    encryption_keys: OptionalSecret = Field(
        default=None,
        description="kid:base64key,… (AES-256, first: active) sealing contents at rest; "
        "default: the WAYPORT_ENCRYPTION_KEYS environment variable.",
    )


class ToolConfig(RootModel[dict[str, Any]]):
    """One ``tools:`` entry: ``type: python | http | mcp`` and that kind's fields. The key
    names the tool (python, http) or the MCP server (its tools keep their own names, with the
    entry's ``prefix``)."""

    @field_validator("root")
    @classmethod
    def _parses(cls, value: dict[str, Any]) -> dict[str, Any]:
        fields = dict(value)
        if fields.get("type", "python") != "mcp":
            fields.setdefault("name", "tool")  # the key names it; see ``entry``
        try:
            parse_entry(fields)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    def entry(self, name: str) -> ToolEntry:
        fields = dict(self.root)
        if fields.get("type", "python") != "mcp":
            fields.setdefault("name", name)
        return parse_entry(fields)


def tool_names(name: str, tool: ToolConfig) -> tuple[str, ...] | None:
    """The registry names an agent gets by listing ``name``; ``None`` for an MCP server
    whose tools are only known once it is asked (no ``tools:`` list in its entry)."""
    entry = tool.entry(name)
    if not isinstance(entry, McpServerConfig):
        return (entry.name or name,)
    if entry.tools is None:
        return None
    return tuple(entry.prefix + t for t in entry.tools)


class LimitsConfig(Section):
    max_steps: int = Field(default=8, ge=1, description="Model calls per run.")
    max_tool_calls: int = Field(default=16, ge=0, description="Tool executions per run.")
    max_tokens_per_run: int | None = Field(default=None, ge=1)
    run_timeout: float = Field(default=300.0, gt=0, description="Seconds.")

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class ContextConfig(Section):
    budget_tokens: int | None = Field(
        default=None, ge=1, description="null: the model's window minus the answer."
    )
    reserve_tokens: int = Field(default=256, ge=0)
    compact_at: float = Field(default=0.8, gt=0, le=1)
    keep_recent_turns: int = Field(default=6, ge=0)
    summary_model: str | None = Field(default=None, description="null: the agent's model.")
    tool_result_max_chars: int = Field(default=4000, ge=16)

    def policy(self) -> ContextPolicy:
        return ContextPolicy(**self.model_dump())


class AgentConfig(Section):
    description: str = ""
    instructions: str | None = None
    instructions_file: Path | None = Field(
        default=None, description="Read at load time; relative to this file."
    )
    model: str = Field(min_length=1, description="A model group under models:.")
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens …")
    tools: list[str] = Field(default_factory=list, description="Names under tools:.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    scope: SessionScope = SessionScope.SESSION
    queue_mode: QueueMode = QueueMode.ENQUEUE
    max_queue: int = Field(default=16, ge=1)

    @field_validator("instructions_file", mode="before")
    @classmethod
    def _resolve(cls, value: object, info: ValidationInfo) -> object:
        return resolve_path(value, info)

    @field_validator("instructions_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                value.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {value}: {exc}") from None
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get(KNOWN_MODELS)
        if known is not None and value not in known:
            defined = ", ".join(known) or "none"
            raise ValueError(f"model {value!r} is not defined under models (defined: {defined})")
        return value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get(KNOWN_TOOLS)
        if known is not None:
            # one message per unknown name; pydantic reports the list as a whole
            missing = [n for n in value if n not in known]
            if missing:
                defined = ", ".join(known) or "none"
                raise ValueError(
                    f"tools {missing} are not defined under tools (defined: {defined})"
                )
        if len(set(value)) != len(value):
            raise ValueError("a tool is listed twice")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AgentConfig:
        if self.instructions is not None and self.instructions_file is not None:
            raise ValueError("set instructions or instructions_file, not both")
        return self

    def spec(self, name: str, tools: dict[str, ToolConfig]) -> AgentSpec:
        """The runtime definition; ``tools`` are the file's ``tools:`` (for MCP expansion)."""
        instructions = self.instructions or ""
        if self.instructions_file is not None:
            instructions = self.instructions_file.read_text(encoding="utf-8").strip()
        names: list[str] = []
        for tool in self.tools:
            expanded = tool_names(tool, tools[tool]) if tool in tools else (tool,)
            if expanded is None:
                raise ConfigError(
                    f"agents.{name}.tools: the MCP server {tool!r} lists no tools; name them "
                    f"under tools.{tool}.tools so the agent's tools are known at load time"
                )
            names.extend(expanded)
        return AgentSpec(
            name=name,
            model=self.model,
            description=self.description,
            instructions=instructions,
            params=dict(self.params),
            tools=tuple(names),
            limits=self.limits.limits(),
            context=self.context.policy(),
            scope=self.scope,
            queue_mode=self.queue_mode,
            max_queue=self.max_queue,
        )


def default_agents(first_model: str) -> dict[str, AgentConfig]:
    """Without an ``agents:`` section: ``assistant`` on the first model."""
    return {DEFAULT_AGENT: AgentConfig(model=first_model, instructions=DEFAULT_INSTRUCTIONS)}
