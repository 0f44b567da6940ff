"""Wayport: put AI agents into production.

The public surface is what ``__all__`` lists: the core types every engine speaks, the error
tree, the routing configuration types and the ports (protocols) that backends implement.
Engines and adapters live in subpackages (``wayport.models``, ``wayport.server`` …); fakes for
tests in ``wayport.testing``.

    from wayport import ChatRequest, ModelBackend, WayportError
"""

from wayport.core.agent import AgentSpec, Limits, ToolResult, ToolSpec
from wayport.core.errors import (
    AuthError,
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ChannelError,
    CircuitOpen,
    ConfigError,
    Conflict,
    ContextWindowExceeded,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ReleaseError,
    StoreError,
    Unsupported,
    UnsupportedMediaType,
    UpstreamRateLimited,
    WayportError,
)
from wayport.core.routing import (
    CircuitPolicy,
    ModelGroup,
    RouterPolicy,
    Strategy,
    WeightedDeployment,
)
from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Message,
    ToolCall,
    ToolDef,
    Usage,
)
from wayport.core.workflow import WorkflowDef, parse_workflow  # workflows
from wayport.core.workflow_run import WorkflowRun, WorkflowStatus  # workflows
from wayport.ports import (
    Clock,
    ModelBackend,
    RouterEvents,
    Tool,
    WorkflowObserver,  # workflows
)

__version__ = "0.1.0"

__all__ = [
    "AgentSpec",
    "AuthError",
    "BackendError",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "ChannelError",
    "ChatRequest",
    "Chunk",
    "CircuitOpen",
    "CircuitPolicy",
    "Clock",
    "Completion",
    "ConfigError",
    "Conflict",
    "ContextWindowExceeded",
    "EmbeddingRequest",
    "Embeddings",
    "InvalidRequest",
    "Limits",
    "Message",
    "ModelBackend",
    "ModelGroup",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ReleaseError",
    "RouterEvents",
    "RouterPolicy",
    "StoreError",
    "Strategy",
    "Tool",
    "ToolCall",
    "ToolDef",
    "ToolResult",
    "ToolSpec",
    "Unsupported",
    "UnsupportedMediaType",
    "UpstreamRateLimited",
    "Usage",
    "WayportError",
    "WeightedDeployment",
    "WorkflowDef",  # workflows
    "WorkflowObserver",  # workflows
    "WorkflowRun",  # workflows
    "WorkflowStatus",  # workflows
    "__version__",
    "parse_workflow",  # workflows
]
