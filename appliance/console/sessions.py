"""Staff login sessions, held in memory: a restart signs everybody out, which is acceptable on
one appliance and keeps session secrets out of the database and its backups.

The browser holds only a random identifier; the table is keyed by its SHA-256, so that neither
a memory dump nor the timing of a dictionary lookup gives away a usable identifier.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from appliance.web.csrf import new_token

# 32 random bytes (256 bits) per session identifier.
SESSION_ID_BYTES = 32


@dataclass(frozen=True)
class Session:
    user_id: int
    username: str
    role: str
    csrf_token: str
    expires_at: datetime


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SessionStore:
    """Sessions last `lifetime` from login (not from the last click): a shift, not forever."""

    def __init__(self, lifetime: timedelta, clock: Callable[[], datetime] = _utcnow) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user_id: int, username: str, role: str) -> tuple[str, Session]:
        """A new session; returns the identifier for the cookie (never stored) and the session."""
        now = self._clock()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        session = Session(user_id, username, role, new_token(), now + self.lifetime)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[key]
            return None
        return session

    def delete(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)
