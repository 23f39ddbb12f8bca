"""Letting a database write finish when the task that started it is cancelled.

Cancelling a task half-way through a SQLAlchemy session (at shutdown every component is cancelled)
can leave its connection checked out inside an open SQLite write transaction: the database stays
locked for every other writer until the process ends, and they fail with "database is locked"
after the busy timeout. A write wrapped in `uncancelled` runs to its end first, then the
cancellation goes on as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def uncancelled(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` to its end even if the caller is cancelled meanwhile; then re-raise the
    cancellation (what `coro` raised in that case is logged, since nobody else would see it)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a write failed while its component was stopping", exc_info=error)
        raise
