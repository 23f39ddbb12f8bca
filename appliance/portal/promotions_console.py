"""The console's "Promotions" section: the owner writes what the guest Wi-Fi page shows.

Every signed-in staff member sees the list; administrators create, edit (with a preview of the
sanitised text), reorder, delete and give each promotion an image. Dates are whole days in the
store's time zone: a promotion runs from the start of its first day to the end of its last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from appliance.console.features import ConsoleFeature, NavLink
from appliance.console.keys import SESSION
from appliance.console.render import page, redirect
from appliance.console.sessions import Session
from appliance.portal.promo_images import MAX_UPLOAD_BYTES, ImageRejected, PromoImages
from appliance.portal.promotions import (
    Promotion,
    PromotionError,
    PromotionStore,
    UnknownPromotion,
    check_promotion,
    sanitize_html,
)
from appliance.portal.promotions_web import PROMO_IMAGES
from appliance.web.errors import PageError
from appliance.web.i18n import Text
from appliance.web.timefmt import to_local

PROMOS = web.AppKey("promo_store", PromotionStore)
PROMOS_TZ = web.AppKey("promo_tz", ZoneInfo)
FORM_OVERHEAD_BYTES: Final = 64 * 1024
"""The text fields and multipart framing around an uploaded image."""

MESSAGES: Final = {
    "promos.nav": Text("Акции", "Promotions"),
    "promos.title": Text("Акции на странице Wi-Fi", "Promotions on the Wi-Fi page"),
    "promos.about": Text(
        "Гости видят эти акции на странице входа в Wi-Fi, в этом порядке. Показываются только действующие.",
        "Guests see these promotions on the Wi-Fi sign-in page, in this order. Only current ones are shown.",
    ),
    "promos.none": Text("Акций пока нет.", "No promotions yet."),
    "promos.add": Text("Добавить акцию", "Add a promotion"),
    "promos.new_title": Text("Новая акция", "New promotion"),
    "promos.edit_title": Text("Изменить акцию", "Edit promotion"),
    "promos.field.title": Text("Заголовок", "Title"),
    "promos.field.text": Text("Текст", "Text"),
    "promos.field.text_hint": Text(
        "Можно простое оформление: <b>жирный</b>, <i>курсив</i>, списки <ul><li>…</li></ul>, абзацы <p>…</p> и "
        'ссылки <a href="https://…">…</a>. Остальное убирается.',
        "Simple markup is kept: <b>bold</b>, <i>italic</i>, lists <ul><li>…</li></ul>, paragraphs <p>…</p> and "
        'links <a href="https://…">…</a>. Everything else is removed.',
    ),
    "promos.field.from": Text("Первый день", "First day"),
    "promos.field.to": Text("Последний день", "Last day"),
    "promos.field.dates_hint": Text(
        "Пустое поле — без ограничения. Дни считаются по времени магазина.",
        "Leave empty for no limit. Days are in the store's time zone.",
    ),
    "promos.field.image": Text("Картинка (JPEG, PNG или WebP, до 8 МБ)", "Picture (JPEG, PNG or WebP, up to 8 MB)"),
    "promos.field.remove_image": Text("Убрать картинку", "Remove the picture"),
    "promos.current_image": Text("Сейчас:", "Now:"),
    "promos.image_alt": Text("Картинка акции «{title}»", "Picture of the promotion “{title}”"),
    "promos.preview": Text("Предпросмотр", "Preview"),
    "promos.preview_note": Text(
        "Так текст будет выглядеть у гостей. Картинка появится после сохранения.",
        "This is how guests will see the text. The picture appears once saved.",
    ),
    "promos.save": Text("Сохранить", "Save"),
    "promos.cancel": Text("Отмена", "Cancel"),
    "promos.edit": Text("Изменить", "Edit"),
    "promos.delete": Text("Удалить", "Delete"),
    "promos.up": Text("Выше", "Up"),
    "promos.down": Text("Ниже", "Down"),
    "promos.move_up": Text("Поднять «{title}» выше", "Move “{title}” up"),
    "promos.move_down": Text("Опустить «{title}» ниже", "Move “{title}” down"),
    "promos.delete_label": Text("Удалить «{title}»", "Delete “{title}”"),
    "promos.state.current": Text("Показывается", "Shown now"),
    "promos.state.upcoming": Text("Ещё не началась", "Not started yet"),
    "promos.state.ended": Text("Закончилась", "Ended"),
    "promos.window": Text("{start} — {end}", "{start} — {end}"),
    "promos.open_start": Text("с создания", "from creation"),
    "promos.open_end": Text("без срока", "no end"),
    "promos.saved": Text("Акция сохранена.", "The promotion is saved."),
    "promos.forbidden.title": Text("Только для администратора", "Administrators only"),
    "promos.forbidden.hint": Text(
        "Изменять акции может только администратор. Попросите его или войдите под его учётной записью.",
        "Only an administrator can change promotions. Ask one, or sign in with an administrator account.",
    ),
    "promos.error.title_missing": Text("Напишите заголовок акции.", "Write the promotion's title."),
    "promos.error.title_long": Text(
        "Заголовок слишком длинный: не больше 120 знаков.", "The title is too long: 120 characters at most."
    ),
    "promos.error.text_long": Text(
        "Текст слишком длинный для страницы на телефоне. Сократите его.",
        "The text is too long for a phone. Shorten it.",
    ),
    "promos.error.dates": Text(
        "Последний день раньше первого. Проверьте даты.", "The last day is before the first. Check the dates."
    ),
    "promos.error.date_format": Text(
        "Дата не понята. Выберите её в календаре или напишите как 2026-12-31.",
        "The date was not understood. Pick it in the calendar or write it as 2026-12-31.",
    ),
    "promos.error.order_changed": Text(
        "Список акций изменился, пока страница была открыта. Обновите страницу и попробуйте снова.",
        "The promotions changed while the page was open. Reload the page and try again.",
    ),
    "promos.error.image_type": Text(
        "Это не картинка JPEG, PNG или WebP. Сохраните её в одном из этих форматов и загрузите снова.",
        "This is not a JPEG, PNG or WebP picture. Save it in one of these formats and upload it again.",
    ),
    "promos.error.image_too_big": Text(
        "Файл больше 8 МБ. Уменьшите картинку и загрузите снова.",
        "The file is larger than 8 MB. Make the picture smaller and upload it again.",
    ),
    "promos.error.image_pixels": Text(
        "Картинка слишком большая (больше 50 мегапикселей). Уменьшите её и загрузите снова.",
        "The picture is too large (over 50 megapixels). Make it smaller and upload it again.",
    ),
    "promos.error.image_damaged": Text(
        "Картинку не удалось прочитать: файл повреждён. Сохраните её заново и загрузите снова.",
        "The picture could not be read: the file is damaged. Save it again and upload it again.",
    ),
}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class PromoForm:
    """What the form holds, as typed (shown again when something is wrong)."""

    title: str = ""
    text: str = ""
    first_day: str = ""
    last_day: str = ""


def _session(request: web.Request) -> Session:
    session = request[SESSION]
    assert session is not None  # the console's sign-in guard admits no request without one
    return session


def _admin(request: web.Request) -> Session:
    session = _session(request)
    if session.role != "admin":
        raise PageError(403, "promos.forbidden")
    return session


def _promo_id(request: web.Request) -> int:
    return int(request.match_info["promo_id"])


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def day_start(day: str, tz: ZoneInfo, *, after: bool = False) -> datetime | None:
    """The UTC moment a local day starts (`after`: the next day's start, the end of this one)."""
    if not day.strip():
        return None
    try:
        parsed = date.fromisoformat(day.strip())
    except ValueError:
        raise PromotionError("promos.error.date_format") from None
    if after:
        parsed += timedelta(days=1)
    return datetime.combine(parsed, time(0), tzinfo=tz).astimezone(UTC)


def local_day(moment: datetime | None, tz: ZoneInfo, *, last: bool = False) -> str:
    """A stored bound as the form's date (`last`: the day an exclusive end closes)."""
    if moment is None:
        return ""
    return to_local(moment - timedelta(microseconds=1) if last else moment, tz).date().isoformat()


def _form_of(promo: Promotion, tz: ZoneInfo) -> PromoForm:
    return PromoForm(
        promo.title, promo.text_html, local_day(promo.valid_from, tz), local_day(promo.valid_to, tz, last=True)
    )


def _state(promo: Promotion, now: datetime) -> str:
    if promo.shown_at(now):
        return "current"
    return "upcoming" if promo.valid_from is not None and now < promo.valid_from else "ended"


async def _upload(form: Mapping[str, Any]) -> bytes | None:
    field = form.get("image")
    if not isinstance(field, web.FileField):
        return None
    # One byte over the limit is enough to know it is too big.
    data: bytes = await asyncio.to_thread(field.file.read, MAX_UPLOAD_BYTES + 1)
    return data or None


def _form_page(
    request: web.Request,
    form: PromoForm,
    *,
    promo: Promotion | None = None,
    error_key: str | None = None,
    preview: str | None = None,
) -> web.Response:
    return page(
        request,
        "promos_form.html",
        {"form": form, "promo": promo, "error_key": error_key, "preview": preview},
        status=400 if error_key else 200,
    )


@routes.get("/promos", name="promos")
async def promo_list(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    tz = request.app[PROMOS_TZ]
    promos = await request.app[PROMOS].list()
    rows = [
        {
            "promo": p,
            "state": _state(p, now),
            "first": local_day(p.valid_from, tz),
            "last": local_day(p.valid_to, tz, last=True),
        }
        for p in promos
    ]
    return page(request, "promos.html", {"rows": rows, "is_admin": _session(request).role == "admin"})


async def _existing(request: web.Request) -> Promotion:
    promo = await request.app[PROMOS].get(_promo_id(request))
    if promo is None:
        raise web.HTTPNotFound()
    return promo


@routes.get("/promos/new", name="promos_new")
async def new_form(request: web.Request) -> web.Response:
    _admin(request)
    return _form_page(request, PromoForm())


@routes.post("/promos/new", name="promos_new")
async def create(request: web.Request) -> web.Response:
    return await _save(request, _admin(request), None)


@routes.get(r"/promos/{promo_id:\d{1,9}}", name="promo_edit")
async def edit_form(request: web.Request) -> web.Response:
    _admin(request)
    promo = await _existing(request)
    return _form_page(request, _form_of(promo, request.app[PROMOS_TZ]), promo=promo)


@routes.post(r"/promos/{promo_id:\d{1,9}}", name="promo_edit")
async def update(request: web.Request) -> web.Response:
    session = _admin(request)
    return await _save(request, session, await _existing(request))


async def _save(request: web.Request, session: Session, existing: Promotion | None) -> web.Response:
    """Create or update from the posted form; with action=preview, only show the result."""
    store, images, tz = request.app[PROMOS], request.app[PROMO_IMAGES], request.app[PROMOS_TZ]
    data = await request.post()
    form = PromoForm(_field(data, "title"), _field(data, "text"), _field(data, "first_day"), _field(data, "last_day"))
    try:
        valid_from, valid_to = day_start(form.first_day, tz), day_start(form.last_day, tz, after=True)
        if _field(data, "action") == "preview":
            check_promotion(form.title, form.text, valid_from, valid_to)
            return _form_page(request, form, promo=existing, preview=sanitize_html(form.text))
        upload = await _upload(data)
        jpeg = await images.prepare(upload) if upload is not None else None
        if existing is None:
            promo = await store.create(form.title, form.text, valid_from, valid_to, by=session.username)
        else:
            promo = await store.update(existing.id, form.title, form.text, valid_from, valid_to, by=session.username)
    except (PromotionError, ImageRejected) as exc:
        return _form_page(request, form, promo=existing, error_key=exc.key)
    except UnknownPromotion:
        raise web.HTTPNotFound() from None
    if jpeg is not None:
        await store.set_image(promo.id, await images.store(promo.id, jpeg), by=session.username)
    elif _field(data, "remove_image"):
        await images.delete(promo.id)
        await store.set_image(promo.id, None, by=session.username)
    return redirect(request.app.router["promos"].url_for())


@routes.post(r"/promos/{promo_id:\d{1,9}}/delete", name="promo_delete")
async def delete(request: web.Request) -> web.Response:
    _admin(request)
    promo_id = _promo_id(request)
    if await request.app[PROMOS].delete(promo_id):
        await request.app[PROMO_IMAGES].delete(promo_id)
    return redirect(request.app.router["promos"].url_for())


@routes.post(r"/promos/{promo_id:\d{1,9}}/move", name="promo_move")
async def move(request: web.Request) -> web.Response:
    _admin(request)
    step = -1 if _field(await request.post(), "direction") == "up" else 1
    try:
        await request.app[PROMOS].move(_promo_id(request), step)
    except UnknownPromotion:
        raise web.HTTPNotFound() from None
    return redirect(request.app.router["promos"].url_for())


@routes.get(r"/promos/{promo_id:\d{1,9}}/image.jpg", name="promo_console_image")
async def image(request: web.Request) -> web.StreamResponse:
    # The console shows the same file the portal serves (its pages may load only their own origin).
    return web.FileResponse(request.app[PROMO_IMAGES].path(_promo_id(request)), headers={"Content-Type": "image/jpeg"})


def promotions_console_feature(store: PromotionStore, images: PromoImages, tz: ZoneInfo) -> ConsoleFeature:
    def setup(app: web.Application) -> None:
        app[PROMOS] = store
        app[PROMO_IMAGES] = images
        app[PROMOS_TZ] = tz

    return ConsoleFeature(
        name="promotions",
        routes=routes,
        messages=MESSAGES,
        nav=(NavLink("/promos", "promos.nav"),),
        setup=setup,
        max_body_bytes=MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES,
    )
