"""The in-process event bus: the recorder, the alert dispatcher and the console subscribe to it.

Publishing never blocks and never fails: a camera pipeline must not stall because the console
is slow. Each subscriber has its own bounded queue; when it is full the oldest message is
dropped and counted, so a stuck subscriber costs memory bounded by `maxsize`, and what it missed
is visible in its `dropped` count. Durable work (alerts) must not rely on the bus alone: the
alerts outbox reads the database, the bus only wakes it up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DEFAULT_QUEUE = 1000


class Subscription(Generic[T]):
    def __init__(self, bus: EventBus, types: tuple[type[T], ...], maxsize: int) -> None:
        self._bus = bus
        self.types = types
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, message: T) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    async def get(self) -> T:
        return await self._queue.get()

    def close(self) -> None:
        self._bus._subscriptions.discard(self)

    async def __aiter__(self) -> AsyncIterator[T]:
        try:
            while True:
                yield await self._queue.get()
        finally:
            self.close()


class EventBus:
    """Typed publish/subscribe inside one event loop."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, *types: type[T], maxsize: int = DEFAULT_QUEUE) -> Subscription[T]:
        """Messages that are instances of any of `types` (all messages when none given)."""
        self._loop = asyncio.get_running_loop()
        sub: Subscription[T] = Subscription(self, types or (object,), maxsize)  # type: ignore[arg-type]
        self._subscriptions.add(sub)
        return sub

    def publish(self, message: object) -> None:
        """From the event loop's thread."""
        for sub in list(self._subscriptions):
            if isinstance(message, sub.types):
                sub._offer(message)

    def publish_threadsafe(self, message: object) -> None:
        """From a worker thread (demuxer, analyser)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish, message)
