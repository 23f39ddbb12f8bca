"""Staff sign-in and sign-out, the session cookie, and the guard in front of every private page.

- The session cookie holds only a random identifier (see sessions.py); it is HttpOnly,
  SameSite=Strict, and Secure whenever the console is reached over HTTPS.
- The login form is protected against cross-site posting by a double-submit cookie (there is
  no session yet); every other form by the session's own token (web/csrf.py).
- Failed logins are limited per client address and per username; a wrong name and a wrong
  password get the same answer, so the form does not tell which accounts exist.
- A page opened without a session (an alert's link to its event, on the owner's phone) sends to
  the sign-in form with `next=` its path, and signing in leads back there; only paths on this
  console are followed, so the form cannot be made to redirect to another site.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from appliance.console.keys import LOGIN_LIMIT_BY_IP, LOGIN_LIMIT_BY_USER, SESSION, SESSIONS, USERS
from appliance.console.render import page, redirect
from appliance.storage.models import USERNAME_MAX_LENGTH
from appliance.web.csrf import new_token
from appliance.web.ratelimit import Limit

log = logging.getLogger(__name__)

SESSION_COOKIE = "appliance_session"
LOGIN_CSRF_COOKIE = "appliance_login_csrf"

# Five wrong passwords within five minutes lock the address and the username for fifteen:
# a person who mistyped gets several tries, a guesser gets about 500 a day.
LOGIN_LIMIT = Limit(max_hits=5, window_s=5 * 60, lockout_s=15 * 60)

# Pages anybody may open without signing in (resource names).
PUBLIC_RESOURCES = frozenset({"login", "healthz", "metrics", "static"})
NEXT_MAX_LENGTH = 2000
"""Longest page address the sign-in form brings a person back to (an alert's event link is ~60)."""

routes = web.RouteTableDef()


def _resource_name(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.name if resource is not None else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    session_id = request.cookies.get(SESSION_COOKIE)
    session = request.app[SESSIONS].get(session_id) if session_id else None
    request[SESSION] = session
    # Unknown addresses fall through to the 404 page: a redirect would say nothing more.
    unmatched = request.match_info.http_exception is not None
    if session is None and not unmatched and _resource_name(request) not in PUBLIC_RESOURCES:
        response = redirect(_login_url(request, request.rel_url.path_qs if request.method == "GET" else None))
        if session_id:
            response.del_cookie(SESSION_COOKIE, path="/")
        return response
    return await handler(request)


def safe_next(value: str | None) -> str | None:
    """`value` if it is a path on this console to return to after sign-in (an alert's link to an
    event, say), else None: never another site ("//host", "https:"), never the login page."""
    if not value or len(value) > NEXT_MAX_LENGTH or not value.startswith("/") or value.startswith("//"):
        return None
    if any(ch in value for ch in "\r\n\\"):
        return None
    url = URL(value)
    if url.is_absolute() or url.path in ("/login", "/logout"):
        return None
    return value


def _login_url(request: web.Request, after: str | None) -> URL:
    url = request.app.router["login"].url_for()
    after = safe_next(after)
    return url.with_query(next=after) if after is not None and after != "/" else url


def _after_login(request: web.Request, after: str | None) -> URL:
    safe = safe_next(after)
    return URL(safe) if safe is not None else request.app.router["dashboard"].url_for()


def expected_csrf_token(request: web.Request) -> str | None:
    """The login form echoes its cookie; every other form its session's token."""
    if _resource_name(request) == "login":
        return request.cookies.get(LOGIN_CSRF_COOKIE)
    session = request[SESSION]
    return session.csrf_token if session is not None else None


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _user_key(username: str) -> str:
    # Longer names cannot exist; cutting them keeps the limiter's memory bounded.
    return username.lower()[: USERNAME_MAX_LENGTH + 1]


def _ceil_minute(moment: datetime) -> datetime:
    """Shown as HH:MM, a lockout end must not be earlier than the real one."""
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


async def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error_key: str | None = None,
    locked_for_s: float | None = None,
    username: str = "",
    after: str | None = None,
) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    locked_until = None
    if locked_for_s is not None:
        locked_until = _ceil_minute(datetime.now(UTC) + timedelta(seconds=locked_for_s))
    response = page(
        request,
        "login.html",
        {
            "csrf_token": token,
            "error_key": error_key,
            "locked_until": locked_until,
            "username": username,
            "next": safe_next(after),
            "no_users": await request.app[USERS].count() == 0,
        },
        status=status,
    )
    if locked_for_s is not None:
        response.headers["Retry-After"] = str(math.ceil(locked_for_s))
    if request.cookies.get(LOGIN_CSRF_COOKIE) != token:
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="Strict", secure=request.secure
        )
    return response


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    after = request.query.get("next")
    if request[SESSION] is not None:
        return redirect(_after_login(request, after))
    return await _login_page(request, after=after)


@routes.post("/login", name="login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    username = _field(form, "username").strip()
    password = _field(form, "password")
    again = partial(_login_page, request, username=username, after=_field(form, "next"))
    if not username or not password:
        return await again(error_key="login.empty")

    by_ip, by_user = request.app[LOGIN_LIMIT_BY_IP], request.app[LOGIN_LIMIT_BY_USER]
    client, user_key = _client(request), _user_key(username)
    waits = [w for w in (by_ip.retry_after(client), by_user.retry_after(user_key)) if w is not None]
    if waits:
        return await again(status=429, locked_for_s=max(waits))

    user = await request.app[USERS].verify(username, password)
    if user is None:
        waits = [w for w in (by_ip.hit(client), by_user.hit(user_key)) if w is not None]
        # The name is left out: people sometimes type their password into it.
        log.warning("console login failed", extra={"client": client, "locked": bool(waits)})
        if waits:
            return await again(status=429, locked_for_s=max(waits))
        return await again(error_key="login.wrong")

    by_ip.reset(client)
    by_user.reset(user_key)
    sessions = request.app[SESSIONS]
    session_id, _ = sessions.create(user.id, user.username, user.role)
    log.info("console login", extra={"username": user.username, "client": client})
    response = redirect(_after_login(request, _field(form, "next")))
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(sessions.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        request.app[SESSIONS].delete(session_id)
    session = request[SESSION]
    if session is not None:
        log.info("console logout", extra={"username": session.username, "client": _client(request)})
    response = redirect(request.app.router["login"].url_for())
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
