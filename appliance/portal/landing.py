"""The page a guest's phone opens on joining the Wi-Fi, and the readiness check."""

from __future__ import annotations

from aiohttp import web

from appliance.web.templating import render

routes = web.RouteTableDef()


@routes.get("/", name="landing")
async def landing(request: web.Request) -> web.Response:
    return render(request, "landing.html")


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    # No version here: the guest network has no need to know what software runs the store.
    return web.json_response({"status": "ok"})
