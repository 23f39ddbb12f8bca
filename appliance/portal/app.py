"""The guest Wi-Fi portal: an aiohttp application on its own listener, reachable from the guest
network. It is built from its own route modules only, so that nothing of the console (pages,
clips, metrics, static files) has an address here.
"""

from __future__ import annotations

from aiohttp import web

from appliance.config import Config
from appliance.portal import landing
from appliance.portal.messages import CATALOGUE
from appliance.portal.system import PortalSystem
from appliance.web.factory import base_app

# Guests post at most a phone number or a short code: anything bigger is refused early.
PORTAL_MAX_BODY_BYTES = 16 * 1024


def create_portal_app(cfg: Config, system: PortalSystem | None = None) -> web.Application:
    app = base_app(cfg, "appliance.portal", CATALOGUE, client_max_size=PORTAL_MAX_BODY_BYTES)
    app.router.add_routes(landing.routes)
    return app
