"""The guest Wi-Fi portal: an aiohttp application on its own listener, reachable from the guest
network. It is built from its own route modules only, so that nothing of the console (pages,
clips, metrics, static files) has an address here.

Middleware order, outermost first (after the shared language and error pages):
1. diverted requests (another site's Host header) are answered by probes.py and go no further;
2. the visit named by the cookie is looked up;
3. every POST is counted per client address (a flooding device is slowed down);
4. every POST must carry the visit's CSRF token, except the gateway's own callbacks (openNDS
   authmon), which a browser never sends and which the driver authenticates itself.
"""

from __future__ import annotations

import math
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from appliance.config import Config
from appliance.portal import captive_api, landing, login
from appliance.portal.keys import POSTS_BY_IP, SYSTEM, VISIT, VISIT_ID, VISITS
from appliance.portal.messages import CATALOGUE
from appliance.portal.probes import diverted_middleware
from appliance.portal.promotions_web import PORTAL_MESSAGES, install_promo_routes
from appliance.portal.system import PortalSystem
from appliance.portal.visits import VISIT_COOKIE, VisitStore
from appliance.web.csrf import csrf_middleware
from appliance.web.factory import base_app
from appliance.web.i18n import merge
from appliance.web.ratelimit import Limit, RateLimiter

# Guests post at most a phone number or a short code: anything bigger is refused early.
PORTAL_MAX_BODY_BYTES: Final = 16 * 1024
# A login takes a handful of posts; sixty a minute from one address is a script.
POST_LIMIT: Final = Limit(max_hits=60, window_s=60, lockout_s=60)


@web.middleware
async def visit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    visit_id = request.cookies.get(VISIT_COOKIE)
    request[VISIT_ID] = visit_id
    request[VISIT] = request.app[VISITS].get(visit_id)
    return await handler(request)


@web.middleware
async def post_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST":
        wait = request.app[POSTS_BY_IP].hit(request.remote or "unknown")
        if wait is not None:
            raise web.HTTPTooManyRequests(headers={"Retry-After": str(math.ceil(wait))})
    return await handler(request)


def _visit_token(request: web.Request) -> str | None:
    visit = request[VISIT]
    return visit.csrf_token if visit is not None else None


def _csrf_except(exempt: frozenset[object]) -> Middleware:
    checked = csrf_middleware(_visit_token)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Unknown addresses and methods get their 404/405, and the gateway's callbacks are its own.
        if request.match_info.http_exception is not None or request.match_info.handler in exempt:
            return await handler(request)
        return await checked(request, handler)

    return middleware


def create_portal_app(
    cfg: Config, system: PortalSystem, *, visits: VisitStore | None = None, post_limit: Limit = POST_LIMIT
) -> web.Application:
    gateway_routes = system.gateway.portal_routes()
    exempt = frozenset(r.handler for r in gateway_routes or () if isinstance(r, web.RouteDef))
    app = base_app(
        cfg,
        "appliance.portal",
        merge(CATALOGUE, PORTAL_MESSAGES),
        client_max_size=PORTAL_MAX_BODY_BYTES,
        middlewares=[diverted_middleware, visit_middleware, post_limit_middleware, _csrf_except(exempt)],
    )
    app[SYSTEM] = system
    app[VISITS] = visits or VisitStore()
    app[POSTS_BY_IP] = RateLimiter(post_limit)
    app.router.add_routes(landing.routes)
    app.router.add_routes(login.routes)
    app.router.add_routes(captive_api.routes)
    install_promo_routes(app, system.promo_images)
    if gateway_routes is not None:
        app.router.add_routes(gateway_routes)
    return app
