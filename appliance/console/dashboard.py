"""The console's home page: what every camera and every part of the daemon is doing right now."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from appliance.cameras.status import CameraState
from appliance.console.keys import BOARD, COMPONENTS
from appliance.console.render import page

# How each camera state looks: the colour of its badge (a class in console.css).
STATE_TONE = {
    CameraState.ONLINE: "ok",
    CameraState.STARTING: "info",
    CameraState.DISABLED: "muted",
    CameraState.RECONNECTING: "bad",
    CameraState.AUTH_FAILED: "bad",
    CameraState.NOT_FOUND: "bad",
}

routes = web.RouteTableDef()


@routes.get("/", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    cameras = request.app[BOARD].all()
    return page(
        request,
        "dashboard.html",
        {
            "cameras": cameras,
            "online": sum(1 for c in cameras if c.state is CameraState.ONLINE),
            "components": request.app[COMPONENTS](),
            "now": datetime.now(UTC),
            "tone": STATE_TONE,
        },
    )
