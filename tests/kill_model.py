"""A slow scripted model, loaded by ``wayport serve`` as a plugin backend for
``test_kill_durability.py``: the test puts a ``*.dist-info`` declaring it under the
``wayport.backends`` entry-point group on the server's ``PYTHONPATH``, exactly as an installed
plugin package would, and names it in ``wayport.yaml``::

    deployments:
      slow: {backend: slow-scripted, delay: 0.05}
"""

from __future__ import annotations

from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply


def slow_backend(*, name: str, delay: float = 0.05, text: str = "answered") -> ScriptedBackend:
    return ScriptedBackend(name, default=Reply(text), delay=delay)
