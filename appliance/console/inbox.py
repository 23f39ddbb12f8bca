"""The demo inbox page: the alerts a phone would have received, with their snapshots."""

from __future__ import annotations

from aiohttp import web

from appliance.console.keys import INBOX
from appliance.console.render import page

# Snapshot formats recognised by their first bytes; anything else is not served.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}

routes = web.RouteTableDef()


def image_type(data: bytes) -> str | None:
    return next((ctype for magic, ctype in IMAGE_SIGNATURES.items() if data.startswith(magic)), None)


@routes.get("/inbox", name="inbox")
async def inbox(request: web.Request) -> web.Response:
    items = request.app[INBOX].items()
    shown = {i.id for i in items if i.image is not None and image_type(i.image) is not None}
    return page(request, "inbox.html", {"items": items, "with_image": shown})


@routes.get(r"/inbox/{item_id:\d+}/image", name="inbox_image")
async def inbox_image(request: web.Request) -> web.Response:
    item = request.app[INBOX].get(int(request.match_info["item_id"]))
    if item is None or item.image is None:
        raise web.HTTPNotFound()
    ctype = image_type(item.image)
    if ctype is None:
        raise web.HTTPNotFound()
    return web.Response(body=item.image, content_type=ctype)
