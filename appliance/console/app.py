"""The staff console: an aiohttp application on its own listener, for the staff network only.

Each feature is a route module (a `RouteTableDef`) with its templates; a new section of the
console is a new module added here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from aiohttp import web

from appliance.alerts.inbox import DemoInbox
from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.console import auth, dashboard, monitoring
from appliance.console import inbox as inbox_page
from appliance.console.features import ConsoleFeature
from appliance.console.keys import (
    BOARD,
    COMPONENTS,
    INBOX,
    LOGIN_LIMIT_BY_IP,
    LOGIN_LIMIT_BY_USER,
    SESSIONS,
    USERS,
)
from appliance.console.messages import CATALOGUE
from appliance.console.sessions import SessionStore
from appliance.logs import SECRETS
from appliance.redact import mask_text
from appliance.storage.users import UserStore
from appliance.supervisor import ComponentStatus
from appliance.web.body_limit import body_limit_middleware
from appliance.web.csrf import CSRF_FIELD, csrf_middleware
from appliance.web.factory import base_app
from appliance.web.i18n import merge
from appliance.web.ratelimit import Limit, RateLimiter
from appliance.web.templating import JINJA_ENV

# The console's forms are short (sign-in, later settings); nothing bigger is ever posted.
CONSOLE_MAX_BODY_BYTES = 64 * 1024


def create_console_app(
    cfg: Config,
    users: UserStore,
    board: StatusBoard,
    components: Callable[[], list[ComponentStatus]],
    inbox: DemoInbox | None = None,
    features: Sequence[ConsoleFeature] = (),
    *,
    login_limit: Limit = auth.LOGIN_LIMIT,
) -> web.Application:
    # Only the routes of a feature that uploads (a promotion's picture) take its larger bodies.
    larger = {
        route.handler: f.max_body_bytes
        for f in features
        if f.max_body_bytes > CONSOLE_MAX_BODY_BYTES
        for route in f.routes
        if isinstance(route, web.RouteDef)
    }
    app = base_app(
        cfg,
        "appliance.console",
        merge(CATALOGUE, *(f.messages for f in features)),
        client_max_size=max([CONSOLE_MAX_BODY_BYTES, *larger.values()]),
        # Sign-in first: CSRF needs to know the session whose token a form must carry.
        middlewares=[
            body_limit_middleware(CONSOLE_MAX_BODY_BYTES, larger),
            auth.auth_middleware,
            csrf_middleware(auth.expected_csrf_token),
        ],
    )
    env = app[JINJA_ENV]
    env.globals.update(
        inbox_enabled=inbox is not None,
        CSRF_FIELD=CSRF_FIELD,
        feature_nav=[link for f in features for link in f.nav],
    )
    # Error texts from cameras and components may quote a URL; never show its password.
    env.filters["masked"] = lambda text: mask_text(str(text), SECRETS.values)

    app[USERS] = users
    app[BOARD] = board
    app[COMPONENTS] = components
    app[SESSIONS] = SessionStore(timedelta(hours=cfg.console.session_hours))
    app[LOGIN_LIMIT_BY_IP] = RateLimiter(login_limit)
    app[LOGIN_LIMIT_BY_USER] = RateLimiter(login_limit)

    app.router.add_routes(auth.routes)
    app.router.add_routes(dashboard.routes)
    app.router.add_routes(monitoring.routes)
    if inbox is not None:
        app[INBOX] = inbox
        app.router.add_routes(inbox_page.routes)
    for feature in features:
        if feature.setup is not None:
            feature.setup(app)
        app.router.add_routes(feature.routes)
    return app
