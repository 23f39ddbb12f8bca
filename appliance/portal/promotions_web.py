"""What the guest portal needs to show promotions: the images' route, and the partial template's
messages (appliance/portal/templates/_promos.html; its styles are static/promos.css).

The portal app adds them with `install_promo_routes(app, images)` and merges `PORTAL_MESSAGES`
into its catalogue; a page that includes the partial passes `promos` (PromotionStore.current()).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from appliance.portal.promo_images import PromoImages
from appliance.web.i18n import Text

PROMO_IMAGES = web.AppKey("promo_images", PromoImages)
IMAGE_MAX_AGE_S: Final = 7 * 24 * 3600
"""Image addresses carry the picture's hash (?v=…): a changed picture has a new address."""

PORTAL_MESSAGES: Final = {
    "promos.heading": Text("Акции магазина", "Store offers"),
}

promo_routes = web.RouteTableDef()


@promo_routes.get(r"/promo-images/{promo_id:\d{1,9}}.jpg", name="promo_image")
async def promo_image(request: web.Request) -> web.StreamResponse:
    # A missing file is a 404 from FileResponse itself (it looks in a worker thread).
    path = request.app[PROMO_IMAGES].path(int(request.match_info["promo_id"]))
    return web.FileResponse(
        path, headers={"Content-Type": "image/jpeg", "Cache-Control": f"public, max-age={IMAGE_MAX_AGE_S}"}
    )


def install_promo_routes(app: web.Application, images: PromoImages) -> None:
    app[PROMO_IMAGES] = images
    app.router.add_routes(promo_routes)
