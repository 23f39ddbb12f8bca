"""The console's guest Wi-Fi section: who is online now (with a button that ends a session), and the
identification log with a date filter and a CSV export for a lawful request.

Anyone signed in sees the active sessions, with phone numbers partly hidden, and may end one
(the person at the till deals with a misbehaving device). The log shows full identities, so it
and its export are for administrators only. An export asks for the request it answers; it is
recorded in the database (`guest_log_exports`, with the file's SHA-256, listed on the page) and
on the `appliance.audit` logger (when it starts and when it is complete), as are sessions staff
end: there is no audit log table yet, these are the record. The file streams in batches (half a
year of a busy shop is tens of megabytes), so the browser's download shows its progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from aiohttp import web

from appliance.console.features import ConsoleFeature, NavLink
from appliance.console.keys import SESSION
from appliance.console.render import page, redirect
from appliance.portal.identify import IdentificationService
from appliance.portal.log_export import csv_header, csv_rows
from appliance.portal.phones import masked, shown
from appliance.portal.settings import LoginSettings
from appliance.storage.guests import Identity, LogQuery
from appliance.storage.models_guests import FILTER_MAX_LENGTH, REQUEST_REF_MAX_LENGTH, GuestLogExport
from appliance.web.errors import PageError
from appliance.web.i18n import Text

audit = logging.getLogger("appliance.audit")

LOG_PAGE_ROWS: Final = 500
EXPORT_BATCH_ROWS: Final = 1000
"""Rows read and written at a time: half a year of a busy shop streams without holding up the box."""
"""Rows shown on the page; the export has them all."""
DEFAULT_LOG_DAYS: Final = 7
EXPORTS_SHOWN: Final = 10
REQUEST_REF_MIN_LENGTH: Final = 3
SESSION_ID_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
DONE: Final = frozenset({"revoked", "gone"})

MESSAGES: Final = {
    "guests.nav": Text("Гости Wi-Fi", "Guest Wi-Fi"),
    "guests.title": Text("Гости Wi-Fi", "Guest Wi-Fi"),
    "guests.active": Text("Сейчас в сети", "Online now"),
    "guests.none": Text("Сейчас никто не подключён.", "Nobody is connected now."),
    "guests.sms_today": Text("Кодов отправлено сегодня: {sent} из {budget}.", "Codes sent today: {sent} of {budget}."),
    "guests.col.who": Text("Гость", "Guest"),
    "guests.col.method": Text("Способ", "Method"),
    "guests.col.device": Text("Устройство", "Device"),
    "guests.col.since": Text("С", "Since"),
    "guests.col.until": Text("До", "Until"),
    "guests.col.end": Text("Окончание", "End"),
    "guests.col.traffic": Text("Трафик, МБ (вх./исх.)", "Traffic, MB (in/out)"),
    "guests.revoke": Text("Отключить", "Disconnect"),
    "guests.revoke_hint": Text(
        "Отключение закрывает доступ устройству; войти снова оно сможет только с новым кодом или ваучером.",
        "Disconnecting closes the device's access; it can sign in again only with a new code or voucher.",
    ),
    "guests.done.revoked": Text("Сеанс завершён, доступ закрыт.", "The session is over and access is closed."),
    "guests.done.gone": Text(
        "Этот сеанс уже закончился. Список ниже обновлён.", "That session had already ended. The list is up to date."
    ),
    "guests.voucher": Text("ваучер № {id}: {name}", "voucher No. {id}: {name}"),
    "guests.method.sms": Text("SMS", "SMS"),
    "guests.method.call": Text("звонок", "call"),
    "guests.method.voucher": Text("ваучер", "voucher"),
    "guests.method.external": Text("сервис идентификации", "identification service"),
    "guests.relogin": Text("повторный вход", "returning device"),
    "guests.end.logout": Text("вышел сам", "signed out"),
    "guests.end.revoked": Text("отключён сотрудником", "disconnected by staff"),
    "guests.end.session_timeout": Text("время сеанса истекло", "session time over"),
    "guests.end.gateway": Text("закрыт шлюзом (простой)", "closed by the gateway (idle)"),
    "guests.end.relogin": Text("вошёл заново", "signed in again"),
    "guests.end.gateway_error": Text("шлюз не открыл доступ", "the gateway did not open access"),
    "guests.end.open": Text("в сети", "online"),
    "guests.log.link": Text("Журнал идентификации", "Identification log"),
    "guests.log.title": Text("Журнал идентификации", "Identification log"),
    "guests.log.about": Text(
        "Кто, с какого устройства и когда пользовался Wi-Fi (Постановление № 758). Записи хранятся {days} дней "
        "и затем удаляются автоматически. Время — местное.",
        "Who used the Wi-Fi, from which device and when (Decree No. 758). Entries are kept {days} days and then "
        "deleted automatically. Times are local.",
    ),
    "guests.log.from": Text("С даты", "From"),
    "guests.log.to": Text("По дату (включительно)", "To (inclusive)"),
    "guests.log.q": Text("Номер, MAC, IP или ваучер (необязательно)", "Number, MAC, IP or voucher (optional)"),
    "guests.log.show": Text("Показать", "Show"),
    "guests.log.count": Text("Найдено записей: {count}.", "Entries found: {count}."),
    "guests.log.truncated": Text(
        "На странице показаны первые {shown}; в файл выгрузки попадут все.",
        "The first {shown} are shown here; the export file has them all.",
    ),
    "guests.log.empty": Text("За эти дни записей нет.", "No entries for these days."),
    "guests.log.bad_date": Text(
        "Дата не распознана. Выберите даты в календаре или введите их как ГГГГ-ММ-ДД; «с» не позже «по».",
        "The date was not understood. Pick the dates in the calendar or type them as YYYY-MM-DD; «from» not after "
        "«to».",
    ),
    "guests.export.title": Text("Выгрузка по законному запросу", "Export for a lawful request"),
    "guests.export.about": Text(
        "Выгружаются все записи за выбранные даты и с выбранным фильтром. Выгрузка записывается: кто, когда, "
        "по какому запросу и контрольная сумма файла. Файл открывается в Excel двойным щелчком (разделитель — "
        "точка с запятой, время — местное и UTC).",
        "All entries for the chosen dates and filter are exported. The export is recorded: who, when, for which "
        "request, and the file's checksum. The file opens in Excel with a double click (fields separated by "
        "semicolons, times local and UTC).",
    ),
    "guests.export.ref": Text("Запрос (номер и дата, орган)", "Request (number, date, authority)"),
    "guests.export.submit": Text("Выгрузить CSV", "Export CSV"),
    "guests.export.ref_missing": Text(
        "Укажите запрос, по которому делается выгрузка (например «№ 123 от 01.02.2026, ОМВД»), и нажмите кнопку "
        "ещё раз.",
        "Name the request the export answers (e.g. «No. 123 of 01.02.2026, police») and press the button again.",
    ),
    "guests.export.recent": Text("Последние выгрузки", "Recent exports"),
    "guests.export.when": Text("Когда", "When"),
    "guests.export.who": Text("Кто", "Who"),
    "guests.export.rows": Text("Записей", "Entries"),
    "guests.export.sha256": Text("SHA-256 файла", "File SHA-256"),
    "guests.admin_only.title": Text("Только для администратора", "Administrators only"),
    "guests.admin_only.hint": Text(
        "Журнал идентификации содержит персональные данные гостей; его видят и выгружают только администраторы. "
        "Обратитесь к администратору.",
        "The identification log holds guests' personal data; only administrators see and export it. Ask an "
        "administrator.",
    ),
    "guests.doc.passport_rf": Text("паспорт РФ", "Russian passport"),
    "guests.doc.foreign_passport": Text("паспорт иностранного гражданина", "foreign passport"),
    "guests.doc.military_id": Text("военный билет", "military ID"),
    "guests.doc.other_state_id": Text("иной документ", "other identity document"),
}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class GuestsConsole:
    service: IdentificationService
    settings: LoginSettings
    tz: ZoneInfo


GUESTS = web.AppKey("guests_console", GuestsConsole)


@dataclass(frozen=True)
class Who:
    """How a guest is named on the page: a phone number (masked or whole) or a voucher."""

    phone: str | None
    voucher_id: str | None
    name: str | None
    document_type: str | None
    document_key: str | None
    """The message naming the document type, when it is one this page knows."""


def _who(identity: Identity, *, whole: bool) -> Who:
    phone = None
    if identity.phone_e164 is not None:
        phone = shown(identity.phone_e164) if whole else masked(identity.phone_e164)
    key = f"guests.doc.{identity.document_type}"
    return Who(
        phone, identity.voucher_id, identity.guest_name, identity.document_type, key if key in MESSAGES else None
    )


def _require_admin(request: web.Request) -> str:
    session = request[SESSION]
    if session is None or session.role != "admin":
        raise PageError(403, "guests.admin_only")
    return session.username


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@routes.get("/guests", name="guests")
async def guests_page(request: web.Request) -> web.Response:
    console = request.app[GUESTS]
    now = datetime.now(UTC)
    views = await console.service.guests.open_sessions()
    done = request.query.get("done")
    today = now.astimezone(console.tz).date()
    return page(
        request,
        "guests.html",
        {
            "rows": [(v.session, _who(v.identity, whole=False)) for v in views],
            "now": now,
            "done": done if done in DONE else None,
            "sms_sent": await console.service.budget.sent_on(today),
            "sms_budget": console.settings.daily_sms_budget,
        },
    )


@routes.post(r"/guests/{session_id}/revoke", name="guests_revoke")
async def revoke(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise web.HTTPNotFound()
    ended = await request.app[GUESTS].service.revoke(session_id)
    staff = request[SESSION]
    audit.info(
        "guest session revoked by staff",
        extra={
            "audit": "guest_session_revoke",
            "user": staff.username if staff else None,
            "session": session_id,
            "ended": ended,
        },
    )
    return redirect(request.app.router["guests"].url_for().with_query(done="revoked" if ended else "gone"))


@dataclass(frozen=True)
class LogForm:
    start: date
    end: date
    text: str

    def query(self, tz: ZoneInfo) -> LogQuery:
        """From the local midnight starting `start` to the one ending `end`."""
        return LogQuery(
            from_utc=datetime.combine(self.start, time(), tz).astimezone(UTC),
            to_utc=datetime.combine(self.end + timedelta(days=1), time(), tz).astimezone(UTC),
            text=self.text or None,
        )


def _log_form(fields: Mapping[str, object], tz: ZoneInfo) -> LogForm | None:
    """The dates and filter asked for (a week up to today when none); None when they make no sense."""
    today = datetime.now(tz).date()
    start_text, end_text = _field(fields, "from"), _field(fields, "to")
    try:
        end = date.fromisoformat(end_text) if end_text else today
        start = date.fromisoformat(start_text) if start_text else end - timedelta(days=DEFAULT_LOG_DAYS - 1)
    except ValueError:
        return None
    if start > end:
        return None
    return LogForm(start, end, _field(fields, "q")[:FILTER_MAX_LENGTH])


async def _log_page(
    request: web.Request, form: LogForm | None, *, error: str | None = None, request_ref: str = ""
) -> web.Response:
    console = request.app[GUESTS]
    shown_form = form or LogForm(datetime.now(console.tz).date(), datetime.now(console.tz).date(), "")
    rows, count = [], 0
    if form is not None:
        query = form.query(console.tz)
        rows = [
            (v.session, _who(v.identity, whole=True))
            for v in await console.service.guests.log(query, limit=LOG_PAGE_ROWS)
        ]
        count = await console.service.guests.log_count(query)
    return page(
        request,
        "guests_log.html",
        {
            "form": shown_form,
            "rows": rows,
            "count": count,
            "page_rows": LOG_PAGE_ROWS,
            "error": error or (None if form is not None else "guests.log.bad_date"),
            "request_ref": request_ref,
            "retention_days": console.settings.log_retention_days,
            "exports": await console.service.guests.exports(EXPORTS_SHOWN),
        },
        status=400 if error or form is None else 200,
    )


@routes.get("/guests/log", name="guests_log")
async def log_page(request: web.Request) -> web.Response:
    _require_admin(request)
    return await _log_page(request, _log_form(request.query, request.app[GUESTS].tz))


@routes.post("/guests/log/export", name="guests_log_export")
async def export(request: web.Request) -> web.StreamResponse:
    username = _require_admin(request)
    console = request.app[GUESTS]
    fields = await request.post()
    form = _log_form(fields, console.tz)
    request_ref = _field(fields, "request_ref")[:REQUEST_REF_MAX_LENGTH]
    if form is None:
        return await _log_page(request, None, request_ref=request_ref)
    if len(request_ref) < REQUEST_REF_MIN_LENGTH:
        return await _log_page(request, form, error="guests.export.ref_missing")
    query = form.query(console.tz)
    what = {
        "user": username,
        "request_ref": request_ref,
        "from": form.start.isoformat(),
        "to": form.end.isoformat(),
        "filter": query.text,
    }
    # Written before the first byte: an export the browser abandons half way is on record too.
    audit.info("identification log export started", extra={"audit": "guest_log_export", **what})
    filename = f"guest-log-{form.start:%Y%m%d}-{form.end:%Y%m%d}.csv"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await response.prepare(request)
    digest, rows = hashlib.sha256(), 0
    chunk = csv_header().encode()
    async for batch in console.service.guests.log_batches(query, EXPORT_BATCH_ROWS):
        digest.update(chunk)
        await response.write(chunk)
        chunk = (await asyncio.to_thread(csv_rows, batch, console.tz)).encode()
        rows += len(batch)
    digest.update(chunk)
    await response.write(chunk)
    sha256 = digest.hexdigest()
    await console.service.guests.record_export(
        GuestLogExport(
            exported_utc=datetime.now(UTC),
            username=username,
            request_ref=request_ref,
            from_utc=query.from_utc,
            to_utc=query.to_utc,
            filter_text=query.text,
            rows=rows,
            sha256=sha256,
        )
    )
    audit.warning(
        "identification log exported", extra={"audit": "guest_log_export", **what, "rows": rows, "sha256": sha256}
    )
    await response.write_eof()
    return response


def feature(service: IdentificationService, settings: LoginSettings, tz: ZoneInfo) -> ConsoleFeature:
    console = GuestsConsole(service, settings, tz)

    def setup(app: web.Application) -> None:
        app[GUESTS] = console

    return ConsoleFeature("guests", routes, MESSAGES, (NavLink("/guests", "guests.nav"),), setup)
