"""The demo inbox page: what the demo phone received (alerts with their snapshots and clips, SMS)."""

from __future__ import annotations

from aiohttp import web

from appliance.console.keys import INBOX
from appliance.console.render import page

# Snapshot formats recognised by their first bytes; anything else is not served.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
MP4_BRAND_AT = slice(4, 8)
"""An MP4 starts with its `ftyp` box: 4 bytes of size, then the type."""

routes = web.RouteTableDef()


def image_type(data: bytes) -> str | None:
    return next((ctype for magic, ctype in IMAGE_SIGNATURES.items() if data.startswith(magic)), None)


def is_mp4(data: bytes | None) -> bool:
    return data is not None and data[MP4_BRAND_AT] == b"ftyp"


@routes.get("/inbox", name="inbox")
async def inbox(request: web.Request) -> web.Response:
    items = request.app[INBOX].items()
    shown = {i.id for i in items if i.image is not None and image_type(i.image) is not None}
    clips = {i.id for i in items if is_mp4(i.clip)}
    return page(request, "inbox.html", {"items": items, "with_image": shown, "with_clip": clips})


@routes.get(r"/inbox/{item_id:\d+}/image", name="inbox_image")
async def inbox_image(request: web.Request) -> web.Response:
    item = request.app[INBOX].get(int(request.match_info["item_id"]))
    if item is None or item.image is None:
        raise web.HTTPNotFound()
    ctype = image_type(item.image)
    if ctype is None:
        raise web.HTTPNotFound()
    return web.Response(body=item.image, content_type=ctype)


@routes.get(r"/inbox/{item_id:\d+}/clip", name="inbox_clip")
async def inbox_clip(request: web.Request) -> web.Response:
    item = request.app[INBOX].get(int(request.match_info["item_id"]))
    if item is None or item.clip is None or not is_mp4(item.clip):
        raise web.HTTPNotFound()
    return web.Response(body=item.clip, content_type="video/mp4")
