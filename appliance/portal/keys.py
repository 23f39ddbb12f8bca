"""Typed keys for what the portal's handlers share through the application and the request."""

from __future__ import annotations

from aiohttp import web

from appliance.portal.system import PortalSystem
from appliance.portal.visits import Visit, VisitStore
from appliance.web.ratelimit import RateLimiter

SYSTEM = web.AppKey("portal_system", PortalSystem)
VISITS = web.AppKey("portal_visits", VisitStore)
POSTS_BY_IP = web.AppKey("portal_posts_by_ip", RateLimiter)

# The visit the request's cookie names (None without a cookie or for a forgotten visit), and that id.
VISIT: web.RequestKey[Visit | None] = web.RequestKey("portal_visit")
VISIT_ID: web.RequestKey[str | None] = web.RequestKey("portal_visit_id")
