"""The Web Push subscriptions table: phones added on the console's "Push on this phone" page,
read by the Web Push channel, which also records how each delivery went."""

from __future__ import annotations

import builtins
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import utcnow
from appliance.storage.models_webpush import LAST_ERROR_MAX_LENGTH, WebPushSubscription


class PushSubscriptionStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def subscribe(
        self, *, endpoint: str, p256dh: str, auth: str, user_id: int, language: str
    ) -> WebPushSubscription:
        """Add a browser, or renew it: a browser that subscribes again keeps one row (its endpoint)
        with the new keys, and belongs to whoever subscribed it last."""
        values = {"p256dh": p256dh, "auth": auth, "user_id": user_id, "language": language}
        async with self._sessions() as session:
            row = WebPushSubscription(endpoint=endpoint, created_utc=utcnow(), **values)
            session.add(row)
            try:
                await session.commit()
                return row
            except IntegrityError:
                await session.rollback()
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebPushSubscription)
                .where(WebPushSubscription.endpoint == endpoint)
                .values(**values, last_error=None, last_error_utc=None)
            )
            renewed = await session.scalar(select(WebPushSubscription).where(WebPushSubscription.endpoint == endpoint))
        assert renewed is not None, "the subscription that clashed is gone; it was removed at the same moment"
        return renewed

    async def unsubscribe(self, endpoint: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(WebPushSubscription)
                .where(WebPushSubscription.endpoint == endpoint)
                .returning(WebPushSubscription.id)
            )
            return result.first() is not None

    async def remove(self, subscription_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(WebPushSubscription).where(WebPushSubscription.id == subscription_id))

    async def list(self, language: str | None = None) -> builtins.list[WebPushSubscription]:
        """All subscriptions, or those of one language; oldest first."""
        query = select(WebPushSubscription).order_by(WebPushSubscription.id)
        if language is not None:
            query = query.where(WebPushSubscription.language == language)
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

    async def of_user(self, user_id: int) -> builtins.list[WebPushSubscription]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(WebPushSubscription)
                .where(WebPushSubscription.user_id == user_id)
                .order_by(WebPushSubscription.id)
            )
            return builtins.list(rows)

    async def delivered(self, subscription_ids: Collection[int], at: datetime | None = None) -> None:
        if not subscription_ids:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebPushSubscription)
                .where(WebPushSubscription.id.in_(subscription_ids))
                .values(last_ok_utc=at or utcnow())
            )

    async def failed(self, subscription_id: int, message: str, at: datetime | None = None) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(WebPushSubscription)
                .where(WebPushSubscription.id == subscription_id)
                .values(last_error=message[:LAST_ERROR_MAX_LENGTH], last_error_utc=at or utcnow())
            )
