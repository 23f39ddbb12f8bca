"""The console's alerts section: delivery per channel, failures with the provider's words and a
retry button, the owner's pause, per-camera suspensions, and a test alert per channel.

Anyone signed in sees the page; only admins change anything (a pause switches alerts off, which
is not for every account to do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from appliance.alerts.service import AlertsService
from appliance.config import Config
from appliance.console.features import ConsoleFeature, NavLink
from appliance.console.keys import SESSION
from appliance.console.render import page, redirect
from appliance.web.i18n import Text

SERVICE = web.AppKey("alerts_service", AlertsService)
CAMERAS: web.AppKey[dict[str, str]] = web.AppKey("alerts_cameras")

PAUSE_HOURS: Final = (1, 2, 4, 8)
SUSPEND_MINUTES: Final = (15, 30, 60, 120, 240)
DONE: Final = frozenset({"paused", "resumed", "suspended", "unsuspended", "test", "retry"})
"""What the page may confirm after a form (`?done=`); anything else in the address is ignored."""

routes = web.RouteTableDef()

MESSAGES: Final = {
    "alerts.nav": Text("Оповещения", "Alerts"),
    "alerts.title": Text("Оповещения", "Alerts"),
    "alerts.pause.title": Text("Пауза «Я в магазине»", "Pause: “I'm in the shop”"),
    "alerts.pause.on": Text(
        "Оповещения о камерах на паузе до {until}. Оповещения о диске и SMS приходят как обычно.",
        "Camera alerts are paused until {until}. Disk and SMS alerts still arrive.",
    ),
    "alerts.pause.on_forever": Text(
        "Оповещения о камерах на паузе, пока вы её не снимете. Оповещения о диске и SMS приходят как обычно.",
        "Camera alerts are paused until you resume them. Disk and SMS alerts still arrive.",
    ),
    "alerts.pause.off": Text(
        "Оповещения включены. Если вы в магазине и не хотите получать оповещения о движении, поставьте паузу.",
        "Alerts are on. If you are in the shop and want no motion alerts, pause them.",
    ),
    "alerts.pause.for": Text("На сколько", "For how long"),
    "alerts.pause.hours": Text("{n} ч", "{n} h"),
    "alerts.pause.until_resumed": Text("Пока не сниму", "Until I resume"),
    "alerts.pause.submit": Text("Поставить на паузу", "Pause alerts"),
    "alerts.pause.resume": Text("Снять паузу", "Resume alerts"),
    "alerts.suspend.title": Text("Камеры", "Cameras"),
    "alerts.suspend.camera": Text("Камера", "Camera"),
    "alerts.suspend.state": Text("Оповещения", "Alerts"),
    "alerts.suspend.on": Text("включены", "on"),
    "alerts.suspend.until": Text("выключены до {until}", "off until {until}"),
    "alerts.suspend.minutes": Text("{n} мин", "{n} min"),
    "alerts.suspend.submit": Text("Выключить", "Switch off"),
    "alerts.suspend.resume": Text("Включить", "Switch on"),
    "alerts.suspend.none": Text("Камер нет.", "No cameras."),
    "alerts.channels.title": Text("Каналы доставки", "Delivery channels"),
    "alerts.channels.none": Text(
        "Каналы не настроены: оповещения никуда не отправляются. Добавьте раздел [[alerts.channels]] в файл "
        "настроек (пример — в config/appliance.example.toml) и перезапустите устройство.",
        "No channels are set up: alerts go nowhere. Add an [[alerts.channels]] section to the settings file "
        "(config/appliance.example.toml has examples) and restart the appliance.",
    ),
    "alerts.channel": Text("Канал", "Channel"),
    "alerts.kind": Text("Вид", "Kind"),
    "alerts.state.pending": Text("Ждут отправки", "Waiting"),
    "alerts.state.sending": Text("Отправляются", "Sending"),
    "alerts.state.delivered": Text("Доставлено", "Delivered"),
    "alerts.state.failed": Text("Не доставлено", "Failed"),
    "alerts.state.suppressed": Text("Не отправлялись по правилам", "Held back by rules"),
    "alerts.last_delivered": Text("Последняя доставка", "Last delivery"),
    "alerts.oldest_pending": Text("Самое старое ждёт с", "Oldest waiting since"),
    "alerts.disabled": Text("выключен в настройках", "switched off in the settings"),
    "alerts.test": Text("Отправить проверку", "Send a test alert"),
    "alerts.unknown": Text(
        "В истории есть оповещения канала «{channel}», которого больше нет в настройках.",
        "The history has alerts of the channel “{channel}”, which is no longer in the settings.",
    ),
    "alerts.failures.title": Text("Не доставлено", "Not delivered"),
    "alerts.failures.none": Text("Отказов нет.", "No failures."),
    "alerts.failures.hint": Text(
        "Сервис отказался принять эти оповещения, и повторять их бесполезно, пока причина не устранена: обычно это "
        "неверный токен или адрес в настройках канала. Исправьте настройки, перезапустите устройство и нажмите "
        "«Отправить снова».",
        "The service refused these alerts, and sending them again will not help until the cause is fixed: usually "
        "a wrong token or address in the channel's settings. Fix the settings, restart the appliance, then press "
        "“Send again”.",
    ),
    "alerts.when": Text("Когда", "When"),
    "alerts.what": Text("Что", "What"),
    "alerts.answer": Text("Ответ сервиса", "The service said"),
    "alerts.retry": Text("Отправить снова", "Send again"),
    "alerts.retry_all": Text("Отправить снова все отказы канала «{channel}»", "Send all of “{channel}” again"),
    "alerts.recent.title": Text("Последние оповещения", "Recent alerts"),
    "alerts.recent.none": Text("Оповещений ещё не было.", "No alerts yet."),
    "alerts.state": Text("Состояние", "State"),
    "alerts.reason.cooldown": Text("серия событий: сообщено в следующем", "a burst: counted in the next alert"),
    "alerts.reason.paused": Text("пауза", "paused"),
    "alerts.reason.suspended": Text("камера выключена", "camera switched off"),
    "alerts.reason.quiet_hours": Text("тихие часы", "quiet hours"),
    "alerts.admin_only": Text(
        "Менять настройки оповещений может только администратор.", "Only an administrator can change alert settings."
    ),
    "alerts.done.paused": Text("Оповещения о камерах на паузе.", "Camera alerts are paused."),
    "alerts.done.resumed": Text("Пауза снята, оповещения включены.", "The pause is over; alerts are on."),
    "alerts.done.suspended": Text("Оповещения камеры выключены.", "The camera's alerts are switched off."),
    "alerts.done.unsuspended": Text("Оповещения камеры включены.", "The camera's alerts are on again."),
    "alerts.done.test": Text(
        "Проверочное оповещение поставлено в очередь. Через несколько секунд оно появится ниже и на телефоне.",
        "The test alert is queued. In a few seconds it shows below and on the phone.",
    ),
    "alerts.done.retry": Text("Оповещения отправляются снова.", "The alerts are being sent again."),
    "alerts.kind.motion": Text("движение", "motion"),
    "alerts.kind.camera_offline": Text("камера не в сети", "camera offline"),
    "alerts.kind.camera_online": Text("камера в сети", "camera online"),
    "alerts.kind.tamper_covered": Text("объектив закрыт", "lens covered"),
    "alerts.kind.tamper_defocus": Text("расфокусировка", "out of focus"),
    "alerts.kind.tamper_scene_change": Text("камеру сдвинули", "camera moved"),
    "alerts.kind.retention_shortened": Text("записи удалены раньше срока", "footage deleted early"),
    "alerts.kind.disk_nearly_full": Text("диск почти заполнен", "disk nearly full"),
    "alerts.kind.sms_budget_reached": Text("лимит SMS", "SMS budget"),
    "alerts.kind.test": Text("проверка", "test"),
    "alerts.part.snapshot": Text("снимок", "snapshot"),
    "alerts.part.clip": Text("видео", "video"),
    "alerts.part.notice": Text("сообщение", "notice"),
}


def _require_admin(request: web.Request) -> str:
    session = request[SESSION]
    if session is None or session.role != "admin":
        raise web.HTTPForbidden()
    return session.username


def _done(request: web.Request, what: str) -> web.Response:
    return redirect(request.app.router["alerts"].url_for().with_query(done=what))


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _choice(text: str, allowed: tuple[int, ...]) -> int:
    if not text.isdigit() or int(text) not in allowed:
        raise web.HTTPBadRequest()
    return int(text)


@routes.get("/alerts", name="alerts")
async def alerts_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    done = request.query.get("done")
    session = request[SESSION]
    return page(
        request,
        "alerts.html",
        {
            "view": await service.overview(),
            "cameras": request.app[CAMERAS],
            "done": done if done in DONE else None,
            "is_admin": session is not None and session.role == "admin",
            "pause_hours": PAUSE_HOURS,
            "suspend_minutes": SUSPEND_MINUTES,
        },
    )


@routes.post("/alerts/pause", name="alerts_pause")
async def pause(request: web.Request) -> web.Response:
    user = _require_admin(request)
    form = await request.post()
    service = request.app[SERVICE]
    if _field(form, "action") == "resume":
        await service.resume()
        return _done(request, "resumed")
    hours = _field(form, "hours")
    await service.pause(_choice(hours, PAUSE_HOURS) if hours else None, user)
    return _done(request, "paused")


@routes.post("/alerts/suspend", name="alerts_suspend")
async def suspend(request: web.Request) -> web.Response:
    user = _require_admin(request)
    form = await request.post()
    camera = _field(form, "camera")
    if camera not in request.app[CAMERAS]:
        raise web.HTTPBadRequest()
    service = request.app[SERVICE]
    if _field(form, "action") == "resume":
        await service.unsuspend(camera)
        return _done(request, "unsuspended")
    await service.suspend(camera, _choice(_field(form, "minutes"), SUSPEND_MINUTES), user)
    return _done(request, "suspended")


@routes.post("/alerts/test", name="alerts_test")
async def test_alert(request: web.Request) -> web.Response:
    _require_admin(request)
    form = await request.post()
    try:
        await request.app[SERVICE].send_test(_field(form, "channel"))
    except KeyError:
        raise web.HTTPBadRequest() from None
    return _done(request, "test")


@routes.post("/alerts/retry", name="alerts_retry")
async def retry(request: web.Request) -> web.Response:
    _require_admin(request)
    form = await request.post()
    alert_id, channel = _field(form, "alert_id"), _field(form, "channel")
    if alert_id:
        if not alert_id.isdigit():
            raise web.HTTPBadRequest()
        await request.app[SERVICE].retry(alert_id=int(alert_id))
    elif channel:
        await request.app[SERVICE].retry(channel_id=channel)
    else:
        raise web.HTTPBadRequest()
    return _done(request, "retry")


def alerts_feature(service: AlertsService, cfg: Config) -> ConsoleFeature:
    cameras = {cam.id: cam.name for cam in cfg.cameras}

    def setup(app: web.Application) -> None:
        app[SERVICE] = service
        app[CAMERAS] = cameras

    return ConsoleFeature("alerts", routes, MESSAGES, (NavLink("/alerts", "alerts.nav"),), setup)
