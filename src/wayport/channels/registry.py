"""The registry of channel kinds: ``type: telegram`` to the adapter class. Built-ins register
as lazy ``"module:Attr"`` targets, exactly as plugins do through the ``wayport.channels``
entry-point group, so only the kinds in use are imported::

    registry = ChannelRegistry.default()
    adapter = registry.create("webhook", ChannelContext(name="ci", http=client, credentials=…))

A target is any callable taking a :class:`~wayport.channels.base.ChannelContext` and returning a
:class:`~wayport.ports.ChannelAdapter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points

from wayport.channels.base import ChannelContext
from wayport.core.errors import ConfigError
from wayport.ports import ChannelAdapter

ENTRY_POINT_GROUP = "wayport.channels"

BUILTIN_CHANNELS: Mapping[str, str] = {
    "webhook": "wayport.channels.webhook:WebhookChannel",
    "webchat": "wayport.channels.webchat:WebChatChannel",
    "telegram": "wayport.channels.telegram:TelegramChannel",
    "slack": "wayport.channels.slack:SlackChannel",
    "discord": "wayport.channels.discord:DiscordChannel",
    "dingtalk": "wayport.channels.dingtalk:DingTalkChannel",
    "feishu": "wayport.channels.feishu:FeishuChannel",
    "lark": "wayport.channels.feishu:FeishuChannel",  # the same API at open.larksuite.com
}

ChannelFactory = Callable[[ChannelContext], ChannelAdapter]


class ChannelRegistry:
    """Channel kinds by name; instances are independent."""

    def __init__(
        self, kinds: Mapping[str, str] | None = None, *, entry_points: Iterable[EntryPoint] = ()
    ) -> None:
        self._targets: dict[str, str] = dict(BUILTIN_CHANNELS if kinds is None else kinds)
        self._loaded: dict[str, ChannelFactory] = {}
        for ep in entry_points:
            self._targets[ep.name] = ep.value

    @classmethod
    def default(cls) -> ChannelRegistry:
        return cls(entry_points=entry_points(group=ENTRY_POINT_GROUP))

    def register(self, kind: str, target: str | ChannelFactory) -> None:
        if isinstance(target, str):
            self._targets[kind] = target
            self._loaded.pop(kind, None)
        else:
            self._targets[kind] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[kind] = target

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._targets))

    def create(self, kind: str, ctx: ChannelContext) -> ChannelAdapter:
        adapter = self._factory(kind)(ctx)
        if not isinstance(adapter, ChannelAdapter):
            raise ConfigError(f"channel type {kind!r} built a {type(adapter).__name__}")
        return adapter

    def _factory(self, kind: str) -> ChannelFactory:
        found = self._loaded.get(kind)
        if found is not None:
            return found
        target = self._targets.get(kind)
        if target is None:
            raise ConfigError(f"unknown channel type {kind!r} (known: {', '.join(self.names())})")
        module_name, _, attr = target.partition(":")
        try:
            obj: object = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"channel type {kind!r} could not be loaded from {target!r}: {exc}"
            ) from exc
        if not callable(obj):
            raise ConfigError(f"channel type {kind!r}: {target!r} is not callable")
        factory: ChannelFactory = obj
        self._loaded[kind] = factory
        return factory
