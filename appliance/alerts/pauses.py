"""The owner's pause ("I'm in the shop") and per-camera suspensions, in the database and in memory.

The console writes through `Pauses` (same process), so the copy in memory is always current and
the alert producer reads it without a query on its hot path; `load` reads the table at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import utcnow
from appliance.storage.models_alerts import PAUSE_ALL, AlertPause


@dataclass(frozen=True)
class Pause:
    scope: str
    """PAUSE_ALL or a camera id."""
    until_utc: datetime | None
    """None: until switched off."""
    set_by: str | None
    set_at: datetime

    def active(self, at: datetime) -> bool:
        return self.until_utc is None or at < self.until_utc


class Pauses:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._pauses: dict[str, Pause] = {}

    async def load(self) -> None:
        async with self._sessions() as session:
            rows = await session.scalars(select(AlertPause))
            self._pauses = {r.scope: Pause(r.scope, r.until_utc, r.set_by, r.set_at) for r in rows}

    def muted(self, camera_id: str, at: datetime) -> str | None:
        """Why alerts about the camera are muted at `at` ('paused' or 'suspended'), or None."""
        for scope, reason in ((PAUSE_ALL, "paused"), (camera_id, "suspended")):
            pause = self._pauses.get(scope)
            if pause is not None and pause.active(at):
                return reason
        return None

    def active(self, at: datetime) -> dict[str, Pause]:
        """The pauses in force at `at`, by scope."""
        return {scope: p for scope, p in self._pauses.items() if p.active(at)}

    async def set(self, scope: str, until_utc: datetime | None, set_by: str | None) -> Pause:
        pause = Pause(scope, until_utc, set_by, utcnow())
        async with self._sessions.begin() as session:
            await session.merge(AlertPause(scope=scope, until_utc=until_utc, set_by=set_by, set_at=pause.set_at))
        self._pauses[scope] = pause
        return pause

    async def clear(self, scope: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(AlertPause).where(AlertPause.scope == scope))
        self._pauses.pop(scope, None)
