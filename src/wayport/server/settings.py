"""What the HTTP edge needs to know, decided once by the composition root.

settings = ServerSettings(api_key="wp-…", version="0.1.0")
app = create_app(gateway=gateway, settings=settings, metrics=metrics)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    api_key: str | None = None  #: ``None`` turns authentication off (loopback only)
    max_body_bytes: int = 8 * 1024 * 1024  #: larger request bodies are refused with 413
    metrics_enabled: bool = True  #: ``False`` makes ``GET /metrics`` answer 404
    metrics_require_auth: bool = True  #: ask for the API key on ``/metrics`` when one is set
    access_log: bool = True  #: one JSON line per request
    version: str  #: shown in ``/healthz`` and the OpenAPI document
    #: peers whose X-Forwarded-For/-Proto are believed (addresses or CIDRs); empty: none
    trusted_proxies: tuple[str, ...] = ()
    #: browser origins CORS allows; empty: CORS off (no Access-Control-* headers)
    cors_origins: tuple[str, ...] = ()
