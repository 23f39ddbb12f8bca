"""The event bus: typed fan-out, bounded queues, publishing from threads."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from appliance.bus import EventBus


@dataclass(frozen=True)
class Started:
    camera: str


@dataclass(frozen=True)
class Ended:
    camera: str


async def test_subscribers_get_only_their_types() -> None:
    bus = EventBus()
    starts = bus.subscribe(Started)
    everything = bus.subscribe()
    bus.publish(Started("a"))
    bus.publish(Ended("a"))
    assert await starts.get() == Started("a")
    assert starts._queue.empty()
    assert [await everything.get(), await everything.get()] == [Started("a"), Ended("a")]


async def test_a_slow_subscriber_drops_oldest_and_never_blocks_the_publisher() -> None:
    bus = EventBus()
    slow = bus.subscribe(Started, maxsize=3)
    for i in range(10):
        bus.publish(Started(str(i)))
    assert slow.dropped == 7
    assert [(await slow.get()).camera for _ in range(3)] == ["7", "8", "9"]


async def test_publish_from_a_worker_thread() -> None:
    bus = EventBus()
    sub = bus.subscribe(Ended)
    thread = threading.Thread(target=bus.publish_threadsafe, args=(Ended("t"),))
    thread.start()
    thread.join()
    async with asyncio.timeout(2):
        assert await sub.get() == Ended("t")


async def test_closed_subscription_receives_nothing() -> None:
    bus = EventBus()
    sub = bus.subscribe(Started)
    sub.close()
    bus.publish(Started("x"))
    assert sub._queue.empty()
