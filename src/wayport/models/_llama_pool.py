"""The slots of :class:`~wayport.models.llamacpp.LlamaCppBackend` and their threads.

    pool = SlotPool(name="local", path=path, count=2, options={"n_ctx": 2048}, ...)
    slot = await pool.acquire(deadline)          # waits (no thread) for a free slot
    job = pool.submit(slot, ctl, run_complete, slot, ctl, ...)
    # the slot returns to the pool when the job's thread is done with it, not before

The pool also owns the weights' life: loading (all slots at once, on one thread), unloading
after ``idle_unload`` seconds without requests by the injected clock, and reloading lazily.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from wayport.core.errors import BackendTimeout, BackendUnavailable
from wayport.models._llama_worker import Control, SlotLlama, load_slots
from wayport.ports import Clock

logger = logging.getLogger("wayport.models.llamacpp")

T = TypeVar("T")


class SlotPool:
    def __init__(
        self,
        *,
        name: str,
        path: Path,
        count: int,
        options: Mapping[str, Any],
        clock: Clock,
        idle_unload: float | None,
    ) -> None:
        self.name = name
        self.path = path
        self.count = count
        self.options = dict(options)
        self.load_seconds: float | None = None
        self.loads = 0
        self.generated_tokens = 0
        self.unloaded_idle = False  #: the weights were freed for idleness, not yet reloaded
        self.closed = False
        self._clock = clock
        self._idle_unload = idle_unload
        # One thread per slot plus one for loading, unloading and tokenizing; threads start on
        # first use, not here.
        self._executor = ThreadPoolExecutor(count + 1, thread_name_prefix=f"llama-{name}")
        self._slots: list[SlotLlama] = []
        # ``None`` in the queue means "closed": each waiter that takes it passes it on.
        self._free: asyncio.Queue[SlotLlama | None] = asyncio.Queue()
        self._jobs: dict[Future[Any], Control] = {}
        self._state_lock = asyncio.Lock()  # load and unload never overlap
        self._loading: asyncio.Task[None] | None = None
        self._loaded_event = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._active = 0  # requests between acquire() and their job's end
        self._waiting = 0
        self._last_used = clock.now()

    def loaded(self) -> bool:
        return bool(self._slots)

    def busy(self) -> int:
        return len(self._slots) - self._free.qsize()

    def waiting(self) -> int:
        return self._waiting

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the pool's spare thread capacity (loads, long tokenizations)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def acquire(self, deadline: float | None) -> SlotLlama:
        """A free slot, loading the weights first if needed. The request counts as active
        (no idle unload) until its job ends or, on failure here, at once."""
        self._active += 1
        self._last_used = self._clock.now()
        self._waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self.ensure_loaded()
                slot = await self._free.get()
            if slot is None or self.closed:
                self._free.put_nowait(slot)
                raise BackendUnavailable(f"deployment {self.name!r} is closed")
            return slot
        except TimeoutError:
            self._end()
            raise BackendTimeout(f"{self.name}: no free slot in time") from None
        except BaseException:
            self._end()
            raise
        finally:
            self._waiting -= 1

    def submit(self, slot: SlotLlama, ctl: Control, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn`` on a worker thread; ``slot`` returns to the pool once it has finished."""
        loop = asyncio.get_running_loop()
        job = self._executor.submit(fn, *args)
        self._jobs[job] = ctl

        def done(_: Future[T]) -> None:
            # Runs on the worker thread, after it has let go of the slot.
            try:
                loop.call_soon_threadsafe(self._release, slot, job)
            except RuntimeError:
                logger.debug("event loop closed before %s released a slot", self.name)

        job.add_done_callback(done)
        return job

    def _release(self, slot: SlotLlama, job: Future[Any]) -> None:
        ctl = self._jobs.pop(job)
        self.generated_tokens += slot.completion_tokens(ctl)
        if slot in self._slots:
            self._free.put_nowait(slot)
        self._end()

    def _end(self) -> None:
        self._active -= 1
        self._last_used = self._clock.now()

    async def ensure_loaded(self) -> None:
        if self._slots:
            return
        if self.closed:
            raise BackendUnavailable(f"deployment {self.name!r} is closed")
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load())
        # Shielded: a waiter that gives up must not cancel the load others are waiting for.
        await asyncio.shield(self._loading)

    async def _load(self) -> None:
        async with self._state_lock:
            if self._slots:
                return
            started = time.perf_counter()
            try:
                slots = await self.in_thread(load_slots, str(self.path), self.count, self.options)
            except (ValueError, RuntimeError, OSError) as exc:
                raise BackendUnavailable(
                    f"{self.name}: cannot load {self.path.name}: {exc}"
                ) from exc
            self.load_seconds = time.perf_counter() - started
            self.loads += 1
            self._slots = slots
            for slot in slots:
                self._free.put_nowait(slot)
            self.unloaded_idle = False
            self._last_used = self._clock.now()
            self._loaded_event.set()
            logger.info(
                "loaded %s for %s (%d slots, n_ctx %s) in %.3f s",
                self.path.name,
                self.name,
                len(slots),
                self.options.get("n_ctx"),
                self.load_seconds,
            )
            if self._idle_unload is not None and self._watcher is None:
                self._watcher = asyncio.create_task(self._watch_idle(self._idle_unload))

    async def _watch_idle(self, idle: float) -> None:
        while True:
            if not self._slots:
                await self._loaded_event.wait()
                continue
            remaining = self._last_used + idle - self._clock.now()
            if remaining > 0:
                await self._clock.sleep(remaining)
            elif self._active:
                # The request's end moves _last_used on; look again an idle period later.
                await self._clock.sleep(idle)
            else:
                async with self._state_lock:
                    if self._active or not self._slots:
                        continue
                    self.unloaded_idle = True
                    await self._drop_slots()
                logger.info("unloaded %s for %s after %g s idle", self.path.name, self.name, idle)

    async def _drop_slots(self) -> None:
        """Free the weights; the caller holds ``_state_lock`` and no job uses a slot."""
        slots, self._slots = self._slots, []
        self._loaded_event.clear()
        while not self._free.empty():
            self._free.get_nowait()
        if slots:
            await self.in_thread(_close_all, slots)

    async def close(self) -> None:
        """Stop every job at its next token, wait for them, free the weights and threads."""
        if self.closed:
            return
        self.closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._loading is not None:
            # A load in progress cannot be interrupted; let it finish, then free what it made.
            await asyncio.gather(self._loading, return_exceptions=True)
        for ctl in self._jobs.values():
            ctl.stop = True
        if self._jobs:
            await asyncio.gather(
                *(asyncio.wrap_future(job) for job in self._jobs), return_exceptions=True
            )
        async with self._state_lock:
            await self._drop_slots()
        self._free.put_nowait(None)

    def shutdown(self) -> None:
        """After :meth:`close` (and any last :meth:`in_thread`): every job has ended, so the
        idle threads exit as soon as they are told to."""
        self._executor.shutdown(wait=True)


def _close_all(slots: list[SlotLlama]) -> None:
    for slot in slots:
        slot.close()
