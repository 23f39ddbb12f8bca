"""One-time code requests and the daily SMS count, in the database so that neither a restart nor
two requests at the same moment give a guesser extra tries or a pumper extra messages.

Every check-and-change is one conditional UPDATE (an attempt is spent only while the code is
pending, unexpired and has tries left; a day's count rises only while under the budget), so
concurrent requests cannot race past a limit on either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from sqlalchemy import Update, delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models_guests import (
    CODE_CONFIRMED,
    CODE_LOCKED,
    CODE_PENDING,
    CODE_SUPERSEDED,
    GuestCodeRequest,
    GuestSmsDay,
)

# A first insert of the day can collide with another one; the second try then finds the row.
RESERVE_TRIES: Final = 2


@dataclass(frozen=True)
class NewCode:
    request_id: str
    phone_e164: str
    method: str
    code_digest: str
    mac: str
    ip: str
    created_utc: datetime
    ttl: timedelta
    attempts: int


@dataclass(frozen=True)
class PastRequest:
    """A code request as the abuse limits count it."""

    phone_e164: str
    mac: str
    ip: str
    created_utc: datetime


@dataclass(frozen=True)
class Attempt:
    """The outcome of spending one try on a code request."""

    request: GuestCodeRequest | None
    """The row after the try; None when no such request exists."""
    spent: bool
    """False: no try was left to spend (expired, locked, superseded or already used)."""
    confirmed: bool = False
    """The try was the right code: the request is used up (see `spend_attempt`'s `confirm_if`)."""


def affected(result: object) -> int:
    """Rows an UPDATE or DELETE changed."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def _superseded(request_id: str) -> Update:
    return (
        update(GuestCodeRequest)
        .where(GuestCodeRequest.id == request_id, GuestCodeRequest.status == CODE_PENDING)
        .values(status=CODE_SUPERSEDED)
    )


class CodeStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, new: NewCode, *, supersedes: str | None = None) -> None:
        """Store a code request; the request it replaces (the same login's previous code) stops working."""
        async with self._sessions.begin() as session:
            if supersedes is not None:
                await session.execute(_superseded(supersedes))
            session.add(
                GuestCodeRequest(
                    id=new.request_id,
                    phone_e164=new.phone_e164,
                    method=new.method,
                    code_digest=new.code_digest,
                    mac=new.mac,
                    ip=new.ip,
                    created_utc=new.created_utc,
                    expires_utc=new.created_utc + new.ttl,
                    attempts_left=new.attempts,
                    status=CODE_PENDING,
                )
            )

    async def sent(self, request_id: str, provider_id: str | None, *, supersedes: str | None = None) -> None:
        """The provider took the message: keep its id, and only now retire the code it replaces
        (a resend that fails leaves the earlier code working)."""
        async with self._sessions.begin() as session:
            if supersedes is not None:
                await session.execute(_superseded(supersedes))
            await session.execute(
                update(GuestCodeRequest).where(GuestCodeRequest.id == request_id).values(provider_id=provider_id)
            )

    async def discard(self, request_id: str) -> None:
        """A request whose message never went out: it counts for nothing."""
        async with self._sessions.begin() as session:
            await session.execute(delete(GuestCodeRequest).where(GuestCodeRequest.id == request_id))

    async def get(self, request_id: str) -> GuestCodeRequest | None:
        async with self._sessions() as session:
            return await session.get(GuestCodeRequest, request_id)

    async def spend_attempt(
        self, request_id: str, now: datetime, *, confirm_if: Callable[[GuestCodeRequest], bool] | None = None
    ) -> Attempt:
        """Take one try off a pending, unexpired code; the comparison is the caller's, after this:
        `confirm_if`, given the row once the try is spent, confirms the request in the same
        transaction when it says so (one write less per login than a separate `confirm`). The
        UPDATE that spends the try is the guard: a parallel try finds the request no longer pending."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(GuestCodeRequest)
                .where(
                    GuestCodeRequest.id == request_id,
                    GuestCodeRequest.status == CODE_PENDING,
                    GuestCodeRequest.attempts_left > 0,
                    GuestCodeRequest.expires_utc > now,
                )
                .values(attempts_left=GuestCodeRequest.attempts_left - 1)
            )
            row = await session.get(GuestCodeRequest, request_id, populate_existing=True)
            spent = affected(result) == 1
            confirmed = spent and row is not None and confirm_if is not None and confirm_if(row)
            if confirmed:
                assert row is not None
                row.status = CODE_CONFIRMED  # written with the commit
            return Attempt(row, spent, confirmed)

    async def confirm(self, request_id: str) -> bool:
        """True for exactly one caller, however many send the right code at once."""
        return await self._set_status(request_id, CODE_CONFIRMED)

    async def lock(self, request_id: str) -> bool:
        return await self._set_status(request_id, CODE_LOCKED)

    async def _set_status(self, request_id: str, status: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(GuestCodeRequest)
                .where(GuestCodeRequest.id == request_id, GuestCodeRequest.status == CODE_PENDING)
                .values(status=status)
            )
            return affected(result) == 1

    async def requested_since(self, moment: datetime) -> list[PastRequest]:
        """Requests made from `moment` on, oldest first (those whose message failed are gone)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    GuestCodeRequest.phone_e164, GuestCodeRequest.mac, GuestCodeRequest.ip, GuestCodeRequest.created_utc
                )
                .where(GuestCodeRequest.created_utc >= moment)
                .order_by(GuestCodeRequest.created_utc, GuestCodeRequest.id)
            )
            return [PastRequest(*row) for row in rows.all()]

    async def purge(self, before: datetime) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(GuestCodeRequest).where(GuestCodeRequest.created_utc < before))
            return affected(result)


@dataclass(frozen=True)
class Reservation:
    granted: bool
    sent: int
    """The day's count after this reservation (or the count that refused it)."""


class SmsBudget:
    """How many codes went out on each day (store time), against a daily budget."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def reserve(self, day: date, budget: int) -> Reservation:
        """Count one more code for `day` if the budget allows; reserve before sending."""
        for _ in range(RESERVE_TRIES):
            try:
                async with self._sessions.begin() as session:
                    raised = await session.execute(
                        update(GuestSmsDay)
                        .where(GuestSmsDay.day == day, GuestSmsDay.sent < budget)
                        .values(sent=GuestSmsDay.sent + 1)
                    )
                    sent = await session.scalar(select(GuestSmsDay.sent).where(GuestSmsDay.day == day))
                    if sent is None:
                        await session.execute(insert(GuestSmsDay).values(day=day, sent=1))
                        return Reservation(True, 1)
                    return Reservation(affected(raised) == 1, sent)
            except IntegrityError:
                continue
        raise RuntimeError(f"cannot count the SMS of {day}: the row keeps changing under the update")

    async def release(self, day: date) -> None:
        """Give back a reservation whose message was not sent."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(GuestSmsDay)
                .where(GuestSmsDay.day == day, GuestSmsDay.sent > 0)
                .values(sent=GuestSmsDay.sent - 1)
            )

    async def sent_on(self, day: date) -> int:
        async with self._sessions() as session:
            return await session.scalar(select(GuestSmsDay.sent).where(GuestSmsDay.day == day)) or 0

    async def mark_alerted(self, day: date, now: datetime) -> bool:
        """True the first time only: the owner hears about a day's budget once."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(GuestSmsDay)
                .where(GuestSmsDay.day == day, GuestSmsDay.alerted_utc.is_(None))
                .values(alerted_utc=now)
            )
            return affected(result) == 1

    async def purge(self, before: date) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(GuestSmsDay).where(GuestSmsDay.day < before))
            return affected(result)
