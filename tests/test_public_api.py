"""The public surface is deliberate: a change to ``wayport.__all__`` must change this test."""

from __future__ import annotations

import subprocess
import sys

import wayport

EXPECTED = {
    "AgentSpec", "AuthError", "BackendError", "BackendRejected", "BackendTimeout",
    "BackendUnavailable", "ChannelError", "ChatRequest", "Chunk", "CircuitOpen", "CircuitPolicy",
    "Clock", "Completion", "ConfigError", "Conflict", "ContextWindowExceeded",
    "EmbeddingRequest", "Embeddings", "InvalidRequest", "Limits", "Message", "ModelBackend",
    "ModelGroup", "ModelNotFound", "NotFound", "PayloadTooLarge", "PermissionDenied",
    "RateLimited", "ReleaseError", "RouterEvents", "RouterPolicy", "StoreError", "Strategy",
    "Tool", "ToolCall", "ToolDef", "ToolResult", "ToolSpec", "Unsupported",
    "UnsupportedMediaType", "UpstreamRateLimited", "Usage", "WayportError",
    "WeightedDeployment", "__version__",
    # workflows
    "WorkflowDef", "WorkflowObserver", "WorkflowRun", "WorkflowStatus", "parse_workflow",
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    assert set(wayport.__all__) == EXPECTED
    for name in wayport.__all__:
        assert hasattr(wayport, name), name


def test_every_error_is_a_wayport_error_with_an_http_status() -> None:
    errors = [getattr(wayport, n) for n in wayport.__all__ if n.endswith(("Error", "Exceeded"))]
    for cls in errors:
        assert issubclass(cls, wayport.WayportError)
        assert 400 <= cls.status <= 599


def test_importing_wayport_loads_no_engine() -> None:
    """``import wayport`` stays light: no server, HTTP client or model runtime."""
    code = (
        "import sys, wayport; "
        "heavy = {'aiohttp', 'uvicorn', 'starlette', 'llama_cpp', 'sqlalchemy', 'pydantic'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
