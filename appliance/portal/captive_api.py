"""The Captive Portal API (RFC 8908), whose address DHCP option 114 gives phones (RFC 8910).

Phones that know the API ask it instead of probing: `captive` says whether the device must still
sign in, `user-portal-url` where, and after login `seconds-remaining` and `can-extend-session`
(a remembered device can sign in again for a fresh session without a new code). RFC 8908 wants
both URLs on HTTPS with a trusted certificate: set `[portal.login] public_url`; without it the
answer names the address the phone reached, which phones treat as "no API" and fall back to probes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from appliance.portal.hosts import portal_base
from appliance.portal.keys import SYSTEM, VISIT

CONTENT_TYPE: Final = "application/captive+json"

routes = web.RouteTableDef()


@routes.get("/api/captive", name="captive_api")
async def captive_api(request: web.Request) -> web.Response:
    system = request.app[SYSTEM]
    visit = request[VISIT]
    device = await system.gateway.identify(request) or (visit.device if visit is not None else None)
    view = await system.identification.active(device) if device is not None else None
    base = portal_base(request, system.address)
    doc: dict[str, Any] = {
        "captive": view is None,
        "user-portal-url": f"{base}/",
        "venue-info-url": f"{base}/venue",
    }
    if view is not None:
        remaining = (view.session.expires_utc - datetime.now(UTC)).total_seconds()
        doc["seconds-remaining"] = max(0, int(remaining))
        doc["can-extend-session"] = system.settings.remember_days > 0
    return web.Response(
        body=json.dumps(doc).encode(),
        content_type=CONTENT_TYPE,
        # RFC 8908 section 5: the answer is about this device only; a stale copy would be wrong.
        headers={"Cache-Control": "private, no-store"},
    )
