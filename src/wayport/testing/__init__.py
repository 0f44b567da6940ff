"""Fakes shipped with Wayport for tests: a manual clock, a scriptable model backend,
in-memory stores."""

from wayport.testing.clock import ManualClock
from wayport.testing.models import Fail, Reply, ScriptedBackend
from wayport.testing.stores import MemoryStores

__all__ = ["Fail", "ManualClock", "MemoryStores", "Reply", "ScriptedBackend"]
