"""The console's "Push on this phone" page: a signed-in staff member turns on alerts in this browser.

The page's script (console/static/push.js) registers the service worker (push-sw.js, served from
the root so that it may control the whole console), asks the browser for a push subscription
bound to the appliance's VAPID public key and posts it here as a form field, with the session's
CSRF token like every other form. Browsers offer push only to secure pages (HTTPS, or localhost),
which the page explains when it is opened over plain HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.alerts.vapid import application_server_key
from appliance.console.features import ConsoleFeature, NavLink
from appliance.console.keys import SESSION
from appliance.console.render import page, redirect
from appliance.console.sessions import Session
from appliance.storage.models_webpush import ENDPOINT_MAX_LENGTH
from appliance.storage.webpush import PushSubscriptionStore
from appliance.web.i18n import LANG_KEY, Text, translate

SERVICE_WORKER: Final = Path(__file__).parents[1] / "console" / "static" / "push-sw.js"
P256_POINT_BYTES: Final = 65
AUTH_SECRET_BYTES: Final = 16

PUSH_STORE = web.AppKey("push_store", PushSubscriptionStore)
PUSH_PUBLIC_KEY = web.AppKey("push_public_key", str)
PUSH_CHANNEL_CONFIGURED = web.AppKey("push_channel_configured", bool)

MESSAGES = {
    "push.nav": Text("Оповещения на телефон", "Push on this phone"),
    "push.title": Text("Оповещения на этот телефон", "Push on this phone"),
    "push.about": Text(
        "Телефон будет показывать уведомление о каждом оповещении, даже когда консоль закрыта. Нажмите на "
        "уведомление, чтобы открыть событие.",
        "This phone will show a notification for every alert, even when the console is closed. Tap the "
        "notification to open the event.",
    ),
    "push.iphone": Text(
        "На iPhone сначала добавьте консоль на экран «Домой» (кнопка «Поделиться» → «На экран „Домой“»), "
        "откройте её оттуда и включите оповещения.",
        "On an iPhone, first add the console to the Home Screen (Share → Add to Home Screen), open it from "
        "there and turn alerts on.",
    ),
    "push.no_channel": Text(
        "В настройках нет канала Web Push, поэтому телефоны пока ничего не получат. Попросите администратора "
        'добавить [[alerts.channels]] с kind = "webpush".',
        "No Web Push channel is set up, so phones receive nothing yet. Ask the administrator to add "
        '[[alerts.channels]] with kind = "webpush".',
    ),
    "push.needs_script": Text(
        "Для этого нужен JavaScript. Включите его в браузере и обновите страницу.",
        "This needs JavaScript. Turn it on in the browser and reload the page.",
    ),
    "push.on": Text("Включить оповещения", "Turn alerts on"),
    "push.off": Text("Выключить на этом телефоне", "Turn off on this phone"),
    "push.state_on": Text("Оповещения на этот телефон включены.", "Alerts are on for this phone."),
    "push.state_off": Text("Оповещения на этот телефон выключены.", "Alerts are off for this phone."),
    "push.working": Text("Подождите…", "One moment…"),
    "push.insecure": Text(
        "Браузер разрешает оповещения только на защищённых страницах. Откройте консоль по адресу, который "
        "начинается с https://, и включите оповещения там.",
        "The browser allows notifications on secure pages only. Open the console at its https:// address and "
        "turn alerts on there.",
    ),
    "push.unsupported": Text(
        "Этот браузер не умеет принимать оповещения. На Android откройте консоль в Chrome или Firefox; на iPhone "
        "сначала добавьте её на экран «Домой».",
        "This browser cannot receive notifications. On Android open the console in Chrome or Firefox; on an "
        "iPhone add it to the Home Screen first.",
    ),
    "push.denied": Text(
        "Уведомления для консоли запрещены в настройках браузера. Разрешите их для этого сайта и попробуйте снова.",
        "Notifications are blocked for the console in the browser settings. Allow them for this site and try again.",
    ),
    "push.failed": Text(
        "Не получилось: браузер или устройство не ответили. Обновите страницу и попробуйте снова.",
        "That did not work: the browser or the appliance did not answer. Reload the page and try again.",
    ),
    "push.bad_subscription": Text(
        "Браузер прислал неполные данные подписки. Обновите страницу и включите оповещения ещё раз.",
        "The browser sent an incomplete subscription. Reload the page and turn alerts on again.",
    ),
    "push.phones": Text("Ваши телефоны", "Your phones"),
    "push.phones_none": Text(
        "Оповещения пока не включены ни на одном телефоне.", "Alerts are not on for any phone yet."
    ),
    "push.phone": Text("Телефон {n}", "Phone {n}"),
    "push.since": Text("включено {time}", "on since {time}"),
    "push.last_ok": Text("последнее оповещение доставлено {time}", "last alert delivered {time}"),
    "push.last_error": Text(
        "последняя ошибка {time}: {error}. Включите оповещения на телефоне заново.",
        "last error {time}: {error}. Turn alerts on again on that phone.",
    ),
    "push.remove": Text("Удалить", "Remove"),
}

routes = web.RouteTableDef()


class InvalidSubscription(ValueError):
    pass


@dataclass(frozen=True)
class BrowserSubscription:
    endpoint: str
    p256dh: str
    auth: str


def _b64url(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidSubscription(f"keys.{what} is missing")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSubscription(f"keys.{what} is not base64url") from None
    if len(raw) != length:
        raise InvalidSubscription(f"keys.{what} has {len(raw)} bytes, not {length}")
    return raw


def parse_subscription(text: str) -> BrowserSubscription:
    """A `PushSubscription.toJSON()` as the browser sends it, checked so that every stored row can be used."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidSubscription("not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidSubscription("not a JSON object")
    endpoint, keys = doc.get("endpoint"), doc.get("keys")
    if not isinstance(endpoint, str) or len(endpoint) > ENDPOINT_MAX_LENGTH:
        raise InvalidSubscription("endpoint is missing or too long")
    # Browsers' push services are all https; anything else would make the appliance post to arbitrary places.
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        raise InvalidSubscription("endpoint is not a URL") from None
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidSubscription("endpoint is not an https:// address")
    if not isinstance(keys, dict):
        raise InvalidSubscription("keys are missing")
    point = _b64url(keys.get("p256dh"), P256_POINT_BYTES, "p256dh")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidSubscription("keys.p256dh is not a P-256 public key") from None
    _b64url(keys.get("auth"), AUTH_SECRET_BYTES, "auth")
    return BrowserSubscription(endpoint, keys["p256dh"].rstrip("="), keys["auth"].rstrip("="))


def _session(request: web.Request) -> Session:
    session = request[SESSION]
    # The console's sign-in guard lets no request without a session reach these routes.
    assert session is not None
    return session


def _json_error(request: web.Request, key: str) -> web.Response:
    return web.json_response({"ok": False, "error": translate(MESSAGES, request[LANG_KEY], key)}, status=400)


@routes.get("/push", name="push")
async def push_page(request: web.Request) -> web.Response:
    session = _session(request)
    phones = await request.app[PUSH_STORE].of_user(session.user_id)
    return page(request, "push.html", {"phones": phones, "channel": request.app[PUSH_CHANNEL_CONFIGURED]})


@routes.get("/push/vapid-public-key", name="push_vapid_key")
async def vapid_public_key(request: web.Request) -> web.Response:
    return web.json_response({"publicKey": request.app[PUSH_PUBLIC_KEY]})


@routes.post("/push/subscribe", name="push_subscribe")
async def subscribe(request: web.Request) -> web.Response:
    session = _session(request)
    form = await request.post()
    text = form.get("subscription")
    try:
        sub = parse_subscription(text if isinstance(text, str) else "")
    except InvalidSubscription:
        return _json_error(request, "push.bad_subscription")
    await request.app[PUSH_STORE].subscribe(
        endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth, user_id=session.user_id, language=request[LANG_KEY]
    )
    return web.json_response({"ok": True})


@routes.post("/push/unsubscribe", name="push_unsubscribe")
async def unsubscribe(request: web.Request) -> web.Response:
    form = await request.post()
    endpoint = form.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return _json_error(request, "push.bad_subscription")
    removed = await request.app[PUSH_STORE].unsubscribe(endpoint)
    return web.json_response({"ok": True, "removed": removed})


@routes.post(r"/push/phones/{phone_id:\d+}/remove", name="push_remove")
async def remove_phone(request: web.Request) -> web.Response:
    """A phone that is lost or no longer used, removed from another device (only one's own phones)."""
    session = _session(request)
    store = request.app[PUSH_STORE]
    phone_id = int(request.match_info["phone_id"])
    if phone_id not in {p.id for p in await store.of_user(session.user_id)}:
        raise web.HTTPNotFound()
    await store.remove(phone_id)
    return redirect(request.app.router["push"].url_for())


@routes.get("/push-sw.js", name="push_sw")
async def service_worker(request: web.Request) -> web.FileResponse:
    # Served from the root, not /static/, because a service worker controls only the pages below its own path.
    # Behind sign-in like every console page: the browser's update check while signed out fails harmlessly
    # and the installed worker stays.
    return web.FileResponse(SERVICE_WORKER, headers={"Content-Type": "text/javascript", "Cache-Control": "no-cache"})


def push_console_feature(
    store: PushSubscriptionStore, vapid_key: ec.EllipticCurvePrivateKey, *, channel_configured: bool
) -> ConsoleFeature:
    """The page, its routes and its menu entry; `channel_configured`: a webpush channel exists in the config."""
    public_key = application_server_key(vapid_key)

    def setup(app: web.Application) -> None:
        app[PUSH_STORE] = store
        app[PUSH_PUBLIC_KEY] = public_key
        app[PUSH_CHANNEL_CONFIGURED] = channel_configured

    return ConsoleFeature("push", routes, MESSAGES, nav=(NavLink("/push", "push.nav"),), setup=setup)
