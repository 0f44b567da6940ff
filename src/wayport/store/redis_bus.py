"""The ``Bus`` on Redis (redis-py asyncio): what lets replicas share run events, cancellations
and key revocations.

    bus = RedisBus("redis://127.0.0.1:6379/0", prefix="wayport:")
    bus.subscribe("cancel", worker.cancel)
    await bus.start()

- A run's events are a Redis stream, ``{prefix}run:{id}``: ``append`` queues the entry and
  one writer task sends what has queued up in a pipeline (``XADD``, capped, then ``EXPIRE``),
  so the run loop never waits on Redis and entries keep their order. ``read`` replays the
  stream from its first entry and blocks (``XREAD BLOCK``) for the next, until the entry
  marked last. A stream lives ``ttl`` seconds after its last write.
- Topics are pub/sub channels, ``{prefix}topic:{name}``; one subscriber connection per
  replica, subscribed before ``start`` returns, calls the handlers.

Connection failures are retried (the writer keeps its batch, readers resume from the last
entry they saw); ``publish`` raises ``StoreError``. A subscription lost after start is
retried with exponential backoff (``_RETRY`` up to ``_RETRY_MAX`` seconds), logged as an
error once when lost and once when restored: what was published meanwhile (cancellations,
revocations, queued-run notices) is missed, so the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wayport.core.errors import StoreError

_END = b"end"
_DATA = b"d"
_RETRY = 0.5  #: seconds between attempts while Redis is unreachable
_RETRY_MAX = 10.0  #: the subscription's backoff stops growing here
_BATCH = 512


class RedisBus:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wayport:",
        ttl: int = 3600,
        max_entries: int = 10_000,
        block_ms: int = 5000,
    ) -> None:
        self._client: Redis = Redis.from_url(url)
        self._prefix = prefix
        self._ttl = ttl
        self._max = max_entries
        self._block = block_ms
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._handlers: dict[str, list[Callable[[str], None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._log = structlog.get_logger("wayport.bus")

    def subscribe(self, topic: str, handler: Callable[[str], None]) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    async def start(self) -> None:
        try:
            await self._client.ping()
            listening = asyncio.Event()
            self._tasks = [asyncio.create_task(self._write(), name="bus-writer")]
            if self._handlers:
                self._tasks.append(
                    asyncio.create_task(self._listen(listening), name="bus-listener")
                )
                await listening.wait()
        except RedisError as exc:
            await self.close()
            raise StoreError(f"redis: cannot connect: {exc}") from exc

    async def close(self) -> None:
        if self._tasks and not self._tasks[0].done():
            # what the run loops appended before shutdown still goes out (bounded)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await task
        self._tasks = []
        await self._client.aclose()

    # ------------------------------------------------------------------ run logs

    def append(self, run_id: str, data: bytes, *, last: bool) -> None:
        self._queue.put_nowait((self._key(run_id), data, last))

    async def read(self, run_id: str) -> AsyncIterator[bytes]:
        key, after = self._key(run_id), b"0-0"
        while True:
            try:
                answer: Any = await self._client.xread(
                    {key: after}, count=_BATCH, block=self._block
                )
            except RedisError as exc:
                self._log.warning("bus read failed", run_id=run_id, error=str(exc))
                await asyncio.sleep(_RETRY)
                continue
            for _stream, entries in answer or ():
                for entry_id, fields in entries:
                    after = entry_id
                    yield fields[_DATA]
                    if _END in fields:
                        return

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for key, data, last in batch:
                            fields: dict[Any, Any] = {_DATA: data}
                            if last:
                                fields[_END] = b"1"
                            pipe.xadd(key, fields, maxlen=self._max, approximate=True)
                        for key in dict.fromkeys(key for key, _, _ in batch):
                            pipe.expire(key, self._ttl)
                        await pipe.execute()
                    break
                except RedisError as exc:
                    self._log.warning("bus write failed", entries=len(batch), error=str(exc))
                    await asyncio.sleep(_RETRY)
            for _ in batch:
                self._queue.task_done()

    # ------------------------------------------------------------------ topics

    async def publish(self, topic: str, message: str) -> None:
        try:
            await self._client.publish(self._topic(topic), message)
        except RedisError as exc:
            raise StoreError(f"redis: cannot publish on {topic}: {exc}") from exc

    async def _listen(self, listening: asyncio.Event) -> None:
        names = {self._topic(t).encode(): t for t in self._handlers}
        delay, lost_at = _RETRY, 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(*names)
                    listening.set()
                    if lost_at:
                        self._log.warning(
                            "bus subscription restored",
                            topics=sorted(self._handlers),
                            down_s=round(loop.time() - lost_at, 3),
                        )
                        delay, lost_at = _RETRY, 0.0
                    async for message in pubsub.listen():
                        self._dispatch(names, message)
            except (RedisError, OSError) as exc:
                if not lost_at:
                    lost_at = loop.time()
                    self._log.error(
                        "bus subscription lost: retrying with backoff; messages published "
                        "meanwhile (cancellations, key revocations, queued runs) are missed",
                        topics=sorted(self._handlers),
                        error=str(exc),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    def _dispatch(self, names: dict[bytes, str], message: dict[str, Any]) -> None:
        topic = names.get(message["channel"])
        if topic is None:
            return
        text = message["data"].decode()
        for handler in self._handlers[topic]:
            try:
                handler(text)
            except Exception:  # noqa: BLE001 - one bad handler must not end the subscription
                self._log.exception("bus handler failed", topic=topic)

    def _key(self, run_id: str) -> str:
        return f"{self._prefix}run:{run_id}"

    def _topic(self, topic: str) -> str:
        return f"{self._prefix}topic:{topic}"
