"""The registry of backend kinds: the one place that turns ``backend: openai`` into a class.

Built-ins register exactly as plugins do, as lazy ``"module:Attr"`` targets, so naming a kind
imports nothing until a deployment of that kind is built (``wayport version`` never loads
llama.cpp). Other packages add kinds through the ``wayport.backends`` entry-point group::

    # pyproject.toml of a plugin
    [project.entry-points."wayport.backends"]
    echo = "wayport_echo:EchoBackend"

A target is any callable taking ``name=`` plus the deployment's options as keyword arguments
and returning a :class:`~wayport.ports.ModelBackend`::

    registry = BackendRegistry.default()
    backend = registry.create("openai", name="my-vllm",
                              options={"base_url": "http://127.0.0.1:8000/v1", "model": "qwen"})
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from wayport.core.errors import ConfigError
from wayport.ports import ModelBackend

ENTRY_POINT_GROUP = "wayport.backends"

#: The kinds this package ships, registered like any plugin.
BUILTIN_BACKENDS: Mapping[str, str] = {
    "llamacpp": "wayport.models.llamacpp:LlamaCppBackend",
    "openai": "wayport.models.openai_compat:OpenAICompatBackend",
    "anthropic": "wayport.models.anthropic:AnthropicBackend",
}

BackendFactory = Callable[..., ModelBackend]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendKind:
    """One registered kind: where its factory lives and who registered it."""

    name: str
    target: str  #: ``"module:Attr"``; ``Attr`` may be dotted (``"pkg.mod:Outer.Inner"``)
    origin: str = "builtin"  #: ``"builtin"``, or the distribution that declared the entry point


class BackendRegistry:
    """Backend kinds by name. Instances are independent; nothing here is global."""

    def __init__(
        self,
        kinds: Mapping[str, str] | None = None,
        *,
        entry_points: Iterable[EntryPoint] = (),
    ) -> None:
        """``kinds`` maps names to ``"module:Attr"`` targets (the built-ins when omitted);
        ``entry_points`` adds more, without loading them."""
        self._kinds: dict[str, BackendKind] = {}
        self._loaded: dict[str, BackendFactory] = {}
        for name, target in (BUILTIN_BACKENDS if kinds is None else kinds).items():
            self.register(name, target)
        for ep in entry_points:
            dist = ep.dist.name if ep.dist is not None else ep.group
            self.register(ep.name, ep.value, origin=dist)

    @classmethod
    def default(cls) -> BackendRegistry:
        """The built-ins plus every kind installed under the ``wayport.backends`` group."""
        return cls(entry_points=entry_points(group=ENTRY_POINT_GROUP))

    def register(self, name: str, target: str | BackendFactory, *, origin: str = "builtin") -> None:
        """Add a kind. A later registration of the same name wins, so a plugin can replace a
        built-in deliberately."""
        if isinstance(target, str):
            if ":" not in target:
                raise ValueError(f"backend target {target!r} must look like 'module:Attr'")
            self._loaded.pop(name, None)
        else:
            self._loaded[name] = target
            target = f"{target.__module__}:{target.__qualname__}"
        self._kinds[name] = BackendKind(name=name, target=target, origin=origin)

    def kinds(self) -> tuple[BackendKind, ...]:
        return tuple(self._kinds[name] for name in sorted(self._kinds))

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._kinds))

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def is_loaded(self, name: str) -> bool:
        """Whether the kind's module has been imported through this registry."""
        return name in self._loaded

    def resolve(self, name: str) -> BackendFactory:
        """Import the kind's target (once) and return it."""
        factory = self._loaded.get(name)
        if factory is not None:
            return factory
        kind = self._kinds.get(name)
        if kind is None:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown backend {name!r} (known: {known})")
        factory = _import_target(kind)
        self._loaded[name] = factory
        return factory

    def create(self, kind: str, *, name: str, options: Mapping[str, object]) -> ModelBackend:
        """Build one deployment's backend; a mismatch between the options and the factory's
        signature is a :class:`ConfigError`, not a ``TypeError`` from deep inside."""
        factory = self.resolve(kind)
        try:
            inspect.signature(factory).bind(name=name, **options)
        except TypeError as exc:
            raise ConfigError(f"backend {kind!r} does not accept these options: {exc}") from exc
        except ValueError:
            pass  # some builtins and C types have no inspectable signature; let the call decide
        backend = factory(name=name, **options)
        if not isinstance(backend, ModelBackend):
            raise ConfigError(
                f"backend {kind!r} ({self._kinds[kind].target}) built a "
                f"{type(backend).__name__}, which does not implement ModelBackend"
            )
        return backend


def _import_target(kind: BackendKind) -> BackendFactory:
    module_name, _, attr_path = kind.target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        missing = f" (module {exc.name!r} is not installed)" if exc.name else ""
        hint = "" if kind.origin == "builtin" else f"; reinstall {kind.origin}"
        raise ConfigError(
            f"backend {kind.name!r} could not be loaded from {kind.target!r}{missing}{hint}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(
                f"backend {kind.name!r}: {kind.target!r} names nothing ({part!r} is missing)"
            ) from exc
    if not callable(obj):
        raise ConfigError(f"backend {kind.name!r}: {kind.target!r} is not callable")
    factory: BackendFactory = obj
    return factory
