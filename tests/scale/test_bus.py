"""The ``Bus`` contract, in process and on the real Redis, and run events relayed through it
(a follower on one replica sees every event of a run emitted on another)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from wayport.core.agent import RunFinished, RunStarted, TextDelta
from wayport.core.session import Run, RunStatus
from wayport.ports import Bus
from wayport.runtime.bus import LocalBus
from wayport.runtime.events import RunEvents
from wayport.store.redis_bus import RedisBus

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two buses as two replicas see them (in process: one bus for both)."""
    if request.param == "local":
        bus = LocalBus()
        yield bus, bus
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("prefix")
    a, b = RedisBus(url, prefix=prefix, block_ms=200), RedisBus(url, prefix=prefix, block_ms=200)
    yield a, b
    await a.close()
    await b.close()


async def _all(bus: Bus, run_id: str) -> list[bytes]:
    async with asyncio.timeout(10):
        return [entry async for entry in bus.read(run_id)]


async def test_a_log_reads_in_order_from_the_first_entry_to_the_last(
    pair: tuple[Bus, Bus],
) -> None:
    a, b = pair
    await a.start()
    await b.start()
    early = asyncio.create_task(_all(b, "run-1"))  # reading before anything was written
    for i in range(50):
        a.append("run-1", f"e{i}".encode(), last=False)
    a.append("run-1", b"end", last=True)
    expected = [f"e{i}".encode() for i in range(50)] + [b"end"]
    assert await early == expected
    assert await _all(b, "run-1") == expected  # a late reader replays it all
    assert await _all(a, "run-1") == expected


async def test_a_published_message_reaches_every_subscriber(pair: tuple[Bus, Bus]) -> None:
    a, b = pair
    got: dict[str, list[str]] = {"a": [], "b": []}
    both = asyncio.Event()

    def on(name: str) -> object:
        def handle(message: str) -> None:
            got[name].append(message)
            if all(got.values()):
                both.set()

        return handle

    a.subscribe("cancel", on("a"))  # type: ignore[arg-type]
    b.subscribe("cancel", on("b"))  # type: ignore[arg-type]
    await a.start()
    await b.start()
    await a.publish("cancel", "run-9")
    await a.publish("other", "ignored")
    async with asyncio.timeout(5):
        await both.wait()
    assert got == {"a": ["run-9"], "b": ["run-9"]}


async def test_run_events_emitted_on_one_replica_are_followed_on_another(
    pair: tuple[Bus, Bus],
) -> None:
    a, b = pair
    await a.start()
    await b.start()
    here, there = RunEvents(bus=a), RunEvents(bus=b)
    run = Run(
        id="run-x",
        tenant_id="t",
        session_id="s",
        status=RunStatus.RUNNING,
        created_at=1.0,
        updated_at=1.0,
    )
    here.emit(run.id, RunStarted(run=run))
    here.emit(run.id, TextDelta(run_id=run.id, text="hel"))
    channel = there.open(run.id)  # joins late: replays what it missed
    here.emit(run.id, TextDelta(run_id=run.id, text="lo"))
    done = RunFinished(run=replace(run, status=RunStatus.COMPLETED))
    here.emit(run.id, done)
    async with asyncio.timeout(10):
        events = [e async for e in channel.follow()]
    assert events == [
        RunStarted(run=run),
        TextDelta(run_id=run.id, text="hel"),
        TextDelta(run_id=run.id, text="lo"),
        done,
    ]
    assert there.get(run.id) is None  # dropped once finished
    here.close()
    there.close()
