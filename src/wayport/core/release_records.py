"""What the release store keeps: the rollout per agent (with its compare-and-set revision),
the transition history, user feedback, eval results, and the versions of an agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wayport.core.agent import AgentSpec
from wayport.core.release import RolloutState, Strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    state: RolloutState
    strategy: Strategy
    revision: int  #: the store's compare-and-set counter
    window_start: float  #: signals of the current analysis window count from here
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseEvent:
    id: str
    agent: str
    event: str  #: started, step, paused, promoted, rolled_back, aborted, analysis_failed …
    detail: Mapping[str, Any]
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    run_id: str
    agent: str
    version: str
    score: int  #: +1 or -1
    comment: str | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    id: str
    agent: str
    suite: str
    version: str
    score: float  #: 0..1, the share of cases that passed
    results: list[dict[str, Any]]  #: one entry per case
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionInfo:
    agent: str
    version: str
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Picked:
    """The definition that answers a new run, and the one mirrored (shadow) if any."""

    spec: AgentSpec
    shadow: AgentSpec | None = None
