"""Agents defined over the admin API (``PUT /v1/agents/{name}``) are validated by the very model
that validates an ``agents:`` entry of ``wayport.yaml`` (``AgentConfig``), against the models and
tools of the loaded file::

    validate = agent_validator(config)
    spec = validate("support", {"model": "smollm2", "instructions": "Be brief."})

Errors become one ``InvalidRequest`` (400) naming each field. ``instructions_file`` is refused:
a request must not make the server read its own files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from wayport.config.agents import KNOWN_MODELS, KNOWN_TOOLS, AgentConfig, ToolConfig
from wayport.core.agent import AgentSpec
from wayport.core.errors import ConfigError, InvalidRequest

__all__ = ["AGENT_NAME", "agent_validator", "validator_for"]

#: names an API agent may take: what fits in a path segment and in ``agent/<name>``
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validator_for(
    models: Iterable[str], tools: Mapping[str, ToolConfig]
) -> Callable[[str, Mapping[str, Any]], AgentSpec]:
    """``(name, body) -> AgentSpec`` for the given model groups and ``tools:`` entries."""
    context = {KNOWN_MODELS: list(models), KNOWN_TOOLS: list(tools)}

    def validate(name: str, body: Mapping[str, Any]) -> AgentSpec:
        if not AGENT_NAME.match(name):
            raise InvalidRequest(
                "name: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
                param="name",
            )
        if "instructions_file" in body:
            raise InvalidRequest(
                "instructions_file: not accepted over the API; send the text as instructions",
                param="instructions_file",
            )
        try:
            config = AgentConfig.model_validate(dict(body), context=context)
            return config.spec(name, dict(tools))
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            first = exc.errors()[0]["loc"] if exc.errors() else ()
            param = ".".join(str(p) for p in first) or None
            raise InvalidRequest(problems, param=param) from None
        except ConfigError as exc:
            raise InvalidRequest(exc.message, param="tools") from None

    return validate


def agent_validator(config: Any) -> Callable[[str, Mapping[str, Any]], AgentSpec]:
    """The validator for a loaded ``WayportConfig``."""
    return validator_for(list(config.models), config.tools)


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "body"
    message = str(error.get("msg", "invalid"))
    return f"{where}: {message.removeprefix('Value error, ')}"
