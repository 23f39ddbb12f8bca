"""The demo store's promotions: two offers with posters drawn here, so that the guest login page
shows what a store's would. They are added through the same store and image pipeline as the
console's promotions section, once: a demo kept with --data-dir keeps the owner's edits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

from appliance.portal.promo_images import PromoImages
from appliance.portal.promotions import PromotionStore

POSTER_SIZE: Final = (800, 400)
"""Width and height in pixels: a wide banner, sharp on a phone."""
JPEG_QUALITY: Final = 85
BY: Final = "demo"


@dataclass(frozen=True)
class DemoPromo:
    title: str
    html: str
    headline: str
    """Drawn on the poster (ASCII: OpenCV's fonts have no Cyrillic)."""
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    """Gradient colours, BGR."""


DEMO_PROMOS: Final = (
    DemoPromo(
        "Кофе с собой −20%",
        "<p>Каждое утро до 11:00 — скидка 20% на кофе с собой. Покажите эту страницу на кассе.</p>",
        "COFFEE -20%",
        (40, 90, 170),
        (20, 40, 90),
    ),
    DemoPromo(
        "Свежая выпечка с 8:00",
        "<p>Круассаны и булочки из нашей пекарни — <b>каждый день</b>. Вторая булочка в подарок по выходным.</p>",
        "FRESH 8:00",
        (60, 150, 90),
        (30, 70, 40),
    ),
)


def poster(promo: DemoPromo) -> bytes:
    """A JPEG banner: a vertical gradient, a few circles, the headline in large letters."""
    width, height = POSTER_SIZE
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array(promo.top, np.float32), np.array(promo.bottom, np.float32)
    image = np.ascontiguousarray(np.broadcast_to((1 - ramp) * top + ramp * bottom, (height, width, 3)), np.uint8)
    for i in range(6):
        centre = (width - 60 - i * 120, 60 + (i % 3) * 110)
        cv2.circle(image, centre, 36 + 6 * i, (255, 255, 255), 3, cv2.LINE_AA)
    font, scale, thickness = cv2.FONT_HERSHEY_DUPLEX, 2.6, 5
    (text_w, text_h), _ = cv2.getTextSize(promo.headline, font, scale, thickness)
    origin = (max(10, (width - text_w) // 2), (height + text_h) // 2)
    cv2.putText(image, promo.headline, (origin[0] + 4, origin[1] + 4), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    cv2.putText(image, promo.headline, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the demo poster")
    return bytes(encoded.tobytes())


async def seed_promotions(store: PromotionStore, images: PromoImages) -> int:
    """Add the demo promotions unless the store has some; how many were added."""
    if await store.list():
        return 0
    for promo in DEMO_PROMOS:
        created = await store.create(promo.title, promo.html, by=BY)
        jpeg = await images.prepare(await asyncio.to_thread(poster, promo))
        await store.set_image(created.id, await images.store(created.id, jpeg), by=BY)
    return len(DEMO_PROMOS)
