"""Routing decisions: which deployment to try next, how long to back off, whether a
deployment's circuit lets a request through. Pure functions over data; the async router in
``wayport.models.router`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Strategy(str, Enum):
    WEIGHTED = "weighted"  #: weighted random over healthy deployments
    LEAST_INFLIGHT = "least_inflight"  #: fewest requests in flight, weight breaks ties
    LATENCY = "latency"  #: lowest smoothed latency (EWMA), unmeasured deployments first


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedDeployment:
    name: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelGroup:
    """A public model name served by one or more deployments."""

    name: str
    deployments: tuple[WeightedDeployment, ...]
    fallbacks: tuple[str, ...] = ()  #: groups tried in order when this one fails
    context_window_fallbacks: tuple[str, ...] = ()  #: groups tried when the prompt is too long


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitPolicy:
    failure_threshold: int = 5  #: consecutive failures that open the circuit
    cooldown: float = 30.0  #: seconds open before half-open probes are let through
    half_open_probes: int = 1  #: concurrent probes allowed while half-open


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterPolicy:
    strategy: Strategy = Strategy.WEIGHTED
    max_retries: int = 2  #: further attempts after the first, across deployments of a group
    backoff_base: float = 0.1  #: seconds; attempt n waits about base * 2**n, jittered
    backoff_max: float = 5.0
    timeout: float = 600.0  #: overall deadline for one request, retries and fallbacks included
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
