"""The one exception tree. Foreign errors are translated into it at the adapter boundary
(``raise BackendTimeout(...) from exc``); every class maps to one HTTP status and one
OpenAI-style error body::

    WayportError                         500 server_error
    ├── ConfigError                      500 server_error
    ├── InvalidRequest                   400 invalid_request_error
    │   ├── PayloadTooLarge              413
    │   └── UnsupportedMediaType         415
    ├── AuthError                        401 authentication_error
    ├── PermissionDenied                 403 permission_error
    ├── NotFound                         404 not_found_error
    ├── Conflict                         409 conflict_error
    ├── RateLimited                      429 rate_limit_error (Retry-After)
    │   └── BudgetExceeded               429 budget_exceeded
    ├── BackendError                     502 upstream_error        (retriable)
    │   ├── BackendTimeout               504 timeout_error         (retriable)
    │   ├── BackendUnavailable           503 service_unavailable   (retriable, Retry-After)
    │   │   ├── UpstreamRateLimited      429 rate_limit_error      (retriable, Retry-After)
    │   │   └── CircuitOpen              503 service_unavailable   (retriable)
    │   └── BackendRejected              400 invalid_request_error (not retriable)
    │       ├── ContextWindowExceeded    400 context_length_exceeded
    │       └── Unsupported              400 unsupported
    ├── ChannelError                     502
    ├── StoreError                       503
    └── ReleaseError                     409
"""

from __future__ import annotations

from typing import Any, ClassVar


class WayportError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(WayportError):
    """The configuration is invalid; raised before anything starts."""

    default_code = "invalid_config"


class InvalidRequest(WayportError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    default_code = "unsupported_media_type"


class AuthError(WayportError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(WayportError):
    status = 403
    type = "permission_error"


class NotFound(WayportError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    type = "invalid_request_error"
    default_code = "model_not_found"


class Conflict(WayportError):
    status = 409
    type = "conflict_error"


class RateLimited(WayportError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    """A spend budget (per day or month) has no room for the request."""

    default_code = "budget_exceeded"


class BackendError(WayportError):
    """The upstream model failed in a way another attempt may fix."""

    status = 502
    type = "upstream_error"
    retriable = True


class BackendTimeout(BackendError):
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


class BackendUnavailable(BackendError):
    status = 503
    type = "service_unavailable"
    default_code = "upstream_unavailable"


class UpstreamRateLimited(BackendUnavailable):
    status = 429
    type = "rate_limit_error"
    default_code = "upstream_rate_limited"


class CircuitOpen(BackendUnavailable):
    default_code = "circuit_open"


class BackendRejected(BackendError):
    """The upstream refused the request itself; retrying the same request cannot help."""

    status = 400
    type = "invalid_request_error"
    retriable = False


class ContextWindowExceeded(BackendRejected):
    default_code = "context_length_exceeded"


class Unsupported(BackendRejected):
    default_code = "unsupported"


class ChannelError(WayportError):
    status = 502
    type = "channel_error"


class StoreError(WayportError):
    status = 503
    type = "store_error"


class ReleaseError(WayportError):
    status = 409
    type = "release_error"
