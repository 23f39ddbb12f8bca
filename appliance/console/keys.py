"""Typed keys for what the console's handlers share through the application and the request."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from appliance.alerts.inbox import DemoInbox
from appliance.cameras.status import StatusBoard
from appliance.console.sessions import Session, SessionStore
from appliance.storage.users import UserStore
from appliance.supervisor import ComponentStatus
from appliance.web.ratelimit import RateLimiter

USERS = web.AppKey("users", UserStore)
BOARD = web.AppKey("board", StatusBoard)
COMPONENTS: web.AppKey[Callable[[], list[ComponentStatus]]] = web.AppKey("components")
SESSIONS = web.AppKey("sessions", SessionStore)
LOGIN_LIMIT_BY_IP = web.AppKey("login_limit_by_ip", RateLimiter)
LOGIN_LIMIT_BY_USER = web.AppKey("login_limit_by_user", RateLimiter)
INBOX = web.AppKey("inbox", DemoInbox)

# The signed-in staff member's session, or None; set for every request by the auth middleware.
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
