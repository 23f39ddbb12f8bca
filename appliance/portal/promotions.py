"""The store's promotions, shown on the guest login page (phones close the login window as soon as
the internet works, so promotions come before the last step).

Owners write a little HTML; it is sanitised with nh3 when saved (and again when read, in case a
row was edited by hand): only simple text markup survives, links only to http(s) addresses and
marked `rel="noopener nofollow"`. The page inserts the result as is.

Reads are cached for a short while: every guest's login page shows the promotions, which must
not cost a query each; a change made here clears the cache at once, one made by another
appliance sharing the database shows within `CACHE_TTL_S`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import nh3
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import utcnow
from appliance.storage.models_promotions import PROMO_HTML_MAX_LENGTH, PROMO_TITLE_MAX_LENGTH, PromotionRow

ALLOWED_TAGS: Final = frozenset({"p", "br", "b", "strong", "i", "em", "ul", "ol", "li", "a"})
ALLOWED_ATTRIBUTES: Final = {"a": {"href"}}
LINK_SCHEMES: Final = frozenset({"http", "https"})
LINK_REL: Final = "noopener nofollow"
CACHE_TTL_S: Final = 30.0
IMAGE_PATH: Final = "/promo-images/{id}.jpg"


def _absolute_links_only(tag: str, attribute: str, value: str) -> str | None:
    # nh3 already drops other schemes; relative addresses would point into the portal itself.
    if tag == "a" and attribute == "href" and not value.lower().startswith(("http://", "https://")):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Owner's HTML reduced to simple, inert text markup."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(LINK_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
        attribute_filter=_absolute_links_only,
    ).strip()


class PromotionError(ValueError):
    """Bad input for a promotion; `key` names the message (in the console's catalogue) to show."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class UnknownPromotion(LookupError):
    pass


@dataclass(frozen=True)
class Promotion:
    id: int
    title: str
    text_html: str
    """Sanitised: put it into a page as is (`|safe`)."""
    image_url: str | None
    """On the portal's own listener (see promotions_web.py); None without an image."""
    valid_from: datetime | None
    """UTC; None: since it was created."""
    valid_to: datetime | None
    """UTC, exclusive; None: until it is removed."""
    position: int

    def shown_at(self, now_utc: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= now_utc) and (
            self.valid_to is None or now_utc < self.valid_to
        )


def _promotion(row: PromotionRow) -> Promotion:
    image = None
    if row.image_sha256:
        # The hash in the address lets phones cache an image for as long as it does not change.
        image = IMAGE_PATH.format(id=row.id) + f"?v={row.image_sha256[:16]}"
    return Promotion(
        id=row.id,
        title=row.title,
        text_html=sanitize_html(row.text_html),
        image_url=image,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        position=row.position,
    )


def check_promotion(
    title: str, text_html: str, valid_from: datetime | None, valid_to: datetime | None
) -> tuple[str, str]:
    """The title with its spaces tidied and the sanitised text; PromotionError if unusable."""
    title = " ".join(title.split())
    if not title:
        raise PromotionError("promos.error.title_missing")
    if len(title) > PROMO_TITLE_MAX_LENGTH:
        raise PromotionError("promos.error.title_long")
    clean = sanitize_html(text_html)
    if len(clean) > PROMO_HTML_MAX_LENGTH:
        raise PromotionError("promos.error.text_long")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise PromotionError("promos.error.dates")
    return title, clean


class PromotionStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache: tuple[float, builtins.list[Promotion]] | None = None

    async def list(self) -> list[Promotion]:
        """All promotions in their order (past and future ones too)."""
        if self._cache is not None and self._clock() - self._cache[0] < CACHE_TTL_S:
            return self._cache[1]
        async with self._sessions() as session:
            rows = (await session.scalars(select(PromotionRow).order_by(PromotionRow.position, PromotionRow.id))).all()
        promos = [_promotion(r) for r in rows]
        self._cache = (self._clock(), promos)
        return promos

    async def current(self, now_utc: datetime) -> builtins.list[Promotion]:
        """What the login page shows now, in order."""
        return [p for p in await self.list() if p.shown_at(now_utc)]

    async def get(self, promo_id: int) -> Promotion | None:
        return next((p for p in await self.list() if p.id == promo_id), None)

    async def create(
        self,
        title: str,
        text_html: str,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        *,
        by: str | None = None,
    ) -> Promotion:
        title, clean = check_promotion(title, text_html, valid_from, valid_to)
        now = utcnow()
        async with self._sessions.begin() as session:
            last = await session.scalar(select(func.max(PromotionRow.position)))
            row = PromotionRow(
                title=title,
                text_html=clean,
                position=(last or 0) + 1,
                valid_from=valid_from,
                valid_to=valid_to,
                created_at=now,
                updated_at=now,
                updated_by=by,
            )
            session.add(row)
        self._cache = None
        return _promotion(row)

    async def update(
        self,
        promo_id: int,
        title: str,
        text_html: str,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        *,
        by: str | None = None,
    ) -> Promotion:
        title, clean = check_promotion(title, text_html, valid_from, valid_to)
        async with self._sessions.begin() as session:
            row = await session.get(PromotionRow, promo_id)
            if row is None:
                raise UnknownPromotion(promo_id)
            row.title, row.text_html, row.valid_from, row.valid_to = title, clean, valid_from, valid_to
            row.updated_at, row.updated_by = utcnow(), by
        self._cache = None
        return _promotion(row)

    async def set_image(self, promo_id: int, sha256: str | None, *, by: str | None = None) -> None:
        """Record (or with None, forget) the promotion's image file's hash."""
        async with self._sessions.begin() as session:
            row = await session.get(PromotionRow, promo_id)
            if row is None:
                raise UnknownPromotion(promo_id)
            row.image_sha256, row.updated_at, row.updated_by = sha256, utcnow(), by
        self._cache = None

    async def delete(self, promo_id: int) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(PromotionRow).where(PromotionRow.id == promo_id))
        self._cache = None
        return bool(getattr(result, "rowcount", 0))

    async def reorder(self, promo_ids: Sequence[int]) -> None:
        """Put the promotions in this order; it must name each of them exactly once."""
        async with self._sessions.begin() as session:
            rows = {r.id: r for r in (await session.scalars(select(PromotionRow))).all()}
            if sorted(promo_ids) != sorted(rows):
                raise PromotionError("promos.error.order_changed")
            for position, promo_id in enumerate(promo_ids, start=1):
                rows[promo_id].position = position
        self._cache = None

    async def move(self, promo_id: int, step: int) -> None:
        """One place up (step -1) or down (+1); nothing at either end."""
        self._cache = None
        order = [p.id for p in await self.list()]
        if promo_id not in order:
            raise UnknownPromotion(promo_id)
        at = order.index(promo_id)
        to = at + step
        if 0 <= to < len(order):
            order[at], order[to] = order[to], order[at]
            await self.reorder(order)
