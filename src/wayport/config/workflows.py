"""The ``workflows:`` section of ``wayport.yaml``: definitions inline or in files, their
triggers and completion webhooks, and the wiring of the workflow service.

    workflows:
      triage:
        file: workflows/triage.yaml          # or steps:/inputs:/output: inline
        triggers:
          cron: ["0 * * * *"]                 # UTC
          webhook_secret: ${TRIAGE_HOOK_SECRET}   # enables POST /hooks/workflows/triage
        on_complete: {url: "https://ops.example.com/hooks/wayport", secret: ${OPS_SECRET}}

Each definition is parsed and validated (``wayport.core.workflow``) while the file loads, so a
cycle or a missing input is reported with the file and line; references to tools, agents,
models and other workflows are checked by :func:`workflow_specs`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wayport.config.deployments import OptionalSecret, Section, resolve_path
from wayport.core.cron import parse_cron
from wayport.core.errors import ConfigError, WayportError
from wayport.core.session import DEFAULT_TENANT
from wayport.core.workflow import StepDef, StepKind, WorkflowDef, parse_workflow
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.runtime.tools import ToolRegistry
from wayport.runtime.workflows import Effects
from wayport.service.agents import AgentService
from wayport.service.gateway import Gateway
from wayport.service.workflow_agents import agent_effect
from wayport.service.workflows import (
    CompletionHook,
    WorkflowCatalog,
    WorkflowService,
    WorkflowSpec,
)
from wayport.store import resolve_url
from wayport.store.sealing import Sealer  # security: contents sealed at rest
from wayport.store.workflows import SqlWorkflows, open_workflow_store
from wayport.telemetry.tracing import Tracing
from wayport.telemetry.workflows import WorkflowTracing

if TYPE_CHECKING:
    from wayport.config.schema import WayportConfig

__all__ = [
    "CompletionHookConfig",
    "WorkflowConfig",
    "WorkflowTriggers",
    "build_workflow_service",
    "workflow_specs",
]

_PLACEHOLDER = "_"


class WorkflowTriggers(Section):
    cron: list[str] = Field(default_factory=list, description="Cron schedules, in UTC.")
    webhook_secret: OptionalSecret = Field(
        default=None,
        description="HMAC secret of POST /hooks/workflows/<name>; none: no inbound webhook.",
    )
    tenant: str = Field(
        default=DEFAULT_TENANT,
        min_length=1,
        max_length=64,
        description="The tenant runs from cron and webhooks belong to.",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: list[str]) -> list[str]:
        for expression in value:
            try:
                parse_cron(expression)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value


class CompletionHookConfig(Section):
    url: str = Field(pattern=r"^https?://", description="Where finished runs are POSTed.")
    secret: OptionalSecret = Field(default=None, description="Signs the body (HMAC-SHA256).")


class WorkflowConfig(Section):
    """One workflow: ``file`` or an inline definition (``steps`` …), plus triggers."""

    file: Path | None = Field(default=None, description="A YAML file holding the definition.")
    description: str = ""
    inputs: dict[str, Any] | list[str] | None = None
    steps: list[dict[str, Any]] | None = None
    output: Any = None
    triggers: WorkflowTriggers = Field(default_factory=WorkflowTriggers)
    on_complete: CompletionHookConfig | None = None
    _definition: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("file", mode="before")
    @classmethod
    def _relative(cls, value: object, info: ValidationInfo) -> object:
        return resolve_path(value, info)

    @model_validator(mode="after")
    def _parses(self) -> WorkflowConfig:
        if (self.file is None) == (self.steps is None):
            raise ValueError("give either file or steps")
        data: dict[str, Any]
        if self.file is not None:
            try:
                loaded = yaml.safe_load(self.file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"cannot read {self.file}: {exc.strerror or exc}") from None
            except yaml.YAMLError as exc:
                raise ValueError(f"{self.file} is not YAML: {exc}") from None
            if not isinstance(loaded, dict):
                raise ValueError(f"{self.file} must hold a mapping with steps")
            data = loaded
        else:
            data = {"steps": self.steps}
            for key in ("description", "inputs", "output"):
                value = getattr(self, key)
                if value not in (None, ""):
                    data[key] = value
        try:
            parse_workflow(_PLACEHOLDER, data)
        except WayportError as exc:
            raise ValueError(exc.message.replace(f"workflow {_PLACEHOLDER!r} is ", "")) from None
        self._definition = data
        return self

    def definition_data(self) -> dict[str, Any]:
        return dict(self._definition)


def references(steps: tuple[StepDef, ...]) -> list[tuple[str, str, str]]:
    """``(step id, kind, name)`` for every tool, agent, model and workflow a step names."""
    found: list[tuple[str, str, str]] = []
    for step in steps:
        for s in (step, step.inner):
            if s is None:
                continue
            key = {
                StepKind.TOOL: "name",
                StepKind.AGENT: "agent",
                StepKind.LLM: "model",
                StepKind.WORKFLOW: "workflow",
            }.get(s.kind)
            value = s.params.get(key) if key else None
            if isinstance(value, str) and "{{" not in value:
                found.append((step.id, s.kind.value, value))
    return found


def workflow_specs(config: WayportConfig) -> list[WorkflowSpec]:
    """The service's specs. Raises ``ConfigError`` naming every step that refers to a tool,
    agent, model or workflow the configuration does not define."""
    defined: dict[str, WorkflowDef] = {
        name: parse_workflow(name, entry.definition_data())
        for name, entry in config.workflows.items()
    }
    tools = set(config.tools)
    any_mcp = any(t.root.get("type") == "mcp" for t in config.tools.values())
    known = {
        "tool": tools,
        "agent": {a.name for a in config.agent_specs()},
        "llm": set(config.models),
        "workflow": set(defined),
    }
    problems: list[str] = []
    for name, definition in defined.items():
        for step_id, kind, target in references(definition.steps):
            if kind == "tool" and any_mcp:
                continue  # MCP servers list their tools only when they start
            if target not in known[kind]:
                noun = {"llm": "model"}.get(kind, kind)
                problems.append(f"workflows.{name}: step {step_id} names unknown {noun} {target!r}")
    if problems:
        raise ConfigError("\n".join(problems))
    specs: list[WorkflowSpec] = []
    for name, entry in config.workflows.items():
        triggers, hook = entry.triggers, entry.on_complete
        specs.append(
            WorkflowSpec(
                definition=defined[name],
                cron=tuple(parse_cron(c) for c in triggers.cron),
                tenant=triggers.tenant,
                webhook_secret=_secret(triggers.webhook_secret),
                on_complete=None
                if hook is None
                else CompletionHook(url=hook.url, secret=_secret(hook.secret)),
            )
        )
    return specs


def build_workflow_service(
    config: WayportConfig,
    *,
    gateway: Gateway,
    agents: AgentService,
    tracing: Tracing | None = None,
) -> WorkflowService | None:
    """The workflow service of ``config`` (``None`` without workflows): its own connection to
    the configured store, the gateway for ``llm`` steps, the configured tools, the agents; a
    span per run and per step with ``tracing``. On Postgres the engine is one replica of many:
    it never requeues runs at start (others may hold them) and takes over a run whose
    heartbeat is older than ``cluster.stale_after``."""
    if not config.workflows:
        return None
    specs = workflow_specs(config)
    try:
        tools = ToolRegistry.from_specs(
            [tool.entry(name) for name, tool in config.tools.items()], environ=os.environ
        )
    except ConfigError as exc:
        raise ConfigError(f"tools: {exc.message}") from exc
    url, state_dir = config.store.url, config.state_dir
    keys = config.store.encryption_keys  # security: run and step contents sealed at rest
    sealer = Sealer.parse(keys.get_secret_value() if keys is not None else None)

    async def open_store() -> SqlWorkflows:
        return await open_workflow_store(url, state_dir=state_dir, sealer=sealer)

    allow = tuple(getattr(config.server, "outbound_allow", ()) or ())
    needs_client = any(s.on_complete is not None for s in specs)
    return WorkflowService(
        catalog=WorkflowCatalog(specs),
        open_store=open_store,
        effects=Effects(llm=gateway.complete, tools=tools, agent=agent_effect(agents)),
        client=GuardedClient(GuardPolicy(allow=allow)) if needs_client else None,
        observer=WorkflowTracing(tracing) if tracing is not None else None,
        engine_options=_engine_options(config),
    )


def _engine_options(config: WayportConfig) -> dict[str, Any]:
    if not resolve_url(config.store.url, state_dir=config.state_dir).drivername.startswith(
        "postgresql"
    ):
        return {}  # SQLite: one process owns the file, runs it held at start are its own
    cluster = config.cluster
    return {
        "sweep_on_start": False,
        "heartbeat_interval": cluster.heartbeat_interval,
        "stale_after": cluster.stale_after,
        "poll_interval": min(1.0, cluster.heartbeat_interval),
    }


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
