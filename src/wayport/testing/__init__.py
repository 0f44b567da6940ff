"""Fakes shipped with Wayport for tests: a manual clock, a scriptable model backend."""

from wayport.testing.clock import ManualClock
from wayport.testing.models import Fail, Reply, ScriptedBackend

__all__ = ["Fail", "ManualClock", "Reply", "ScriptedBackend"]
