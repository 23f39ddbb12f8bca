"""The console's "Vouchers" section: staff check a guest's identity document, issue a voucher and
print it; the list shows recent vouchers, and any can be revoked.

The code exists in clear only on the page shown right after issuing (the database keeps its
hash), so that page is the printable voucher: the code, the Wi-Fi network's name and what to do,
in Russian and in English whatever the console's language (the guest may read either).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, get_args

from aiohttp import web

from appliance.console.features import ConsoleFeature, NavLink
from appliance.console.keys import SESSION
from appliance.console.render import page, redirect
from appliance.console.sessions import Session
from appliance.portal.vouchers import (
    MAX_VALID_HOURS,
    DocumentType,
    VoucherError,
    VoucherStore,
    format_code,
)
from appliance.storage.models_promotions import MAX_DEVICES_LIMIT
from appliance.web.i18n import LANGS, Text, translate

VOUCHERS = web.AppKey("voucher_store", VoucherStore)
VOUCHER_WIFI_NAME: web.AppKey[str | None] = web.AppKey("voucher_wifi_name")
DOCUMENT_TYPES: Final[tuple[DocumentType, ...]] = get_args(DocumentType)
DEFAULT_VALID_HOURS: Final = 24
DEFAULT_DEVICES: Final = 2
LIST_LENGTH: Final = 100

MESSAGES: Final = {
    "vouchers.nav": Text("Ваучеры Wi-Fi", "Wi-Fi vouchers"),
    "vouchers.title": Text("Ваучеры для Wi-Fi", "Wi-Fi vouchers"),
    "vouchers.about": Text(
        "Для гостя без российского номера телефона: проверьте документ, удостоверяющий личность, впишите имя "
        "так, как в документе, и выдайте ваучер. Код покажется один раз — распечатайте его или перепишите.",
        "For a guest without a Russian phone number: check an identity document, write the name as it is in "
        "the document and issue a voucher. The code is shown once: print it or write it down.",
    ),
    "vouchers.issue_title": Text("Выдать ваучер", "Issue a voucher"),
    "vouchers.field.name": Text("Фамилия, имя, отчество гостя", "Guest's full name"),
    "vouchers.field.document": Text("Документ", "Document"),
    "vouchers.field.ref": Text(
        "Последние 4 знака номера документа (необязательно)", "Last 4 characters of the document number (optional)"
    ),
    "vouchers.field.hours": Text("Срок действия, часов", "Valid for, hours"),
    "vouchers.field.devices": Text("Сколько устройств", "How many devices"),
    "vouchers.issue": Text("Выдать", "Issue"),
    "vouchers.doc.passport_rf": Text("Паспорт гражданина РФ", "Russian passport"),
    "vouchers.doc.foreign_passport": Text("Паспорт иностранного гражданина", "Foreign passport"),
    "vouchers.doc.military_id": Text("Военный билет", "Military ID"),
    "vouchers.doc.other_state_id": Text("Иной документ, удостоверяющий личность", "Other official identity document"),
    "vouchers.recent": Text("Последние ваучеры", "Recent vouchers"),
    "vouchers.none": Text("Ваучеров ещё не выдавали.", "No vouchers issued yet."),
    "vouchers.col.issued": Text("Выдан", "Issued"),
    "vouchers.col.guest": Text("Гость", "Guest"),
    "vouchers.col.document": Text("Документ", "Document"),
    "vouchers.col.by": Text("Выдал", "Issued by"),
    "vouchers.col.until": Text("Действует до", "Valid until"),
    "vouchers.col.devices": Text("Устройства", "Devices"),
    "vouchers.col.state": Text("Состояние", "State"),
    "vouchers.devices_used": Text("{used} из {max}", "{used} of {max}"),
    "vouchers.state.active": Text("Действует", "Active"),
    "vouchers.state.expired": Text("Истёк", "Expired"),
    "vouchers.state.used_up": Text("Все устройства подключены", "All devices used"),
    "vouchers.state.revoked": Text("Отозван", "Revoked"),
    "vouchers.revoke": Text("Отозвать", "Revoke"),
    "vouchers.revoke_label": Text("Отозвать ваучер №{id}", "Revoke voucher no. {id}"),
    "vouchers.revoked_by": Text("отозвал {username}", "revoked by {username}"),
    "vouchers.issued_title": Text("Ваучер выдан", "Voucher issued"),
    "vouchers.print_hint": Text(
        "Код показан только сейчас. Распечатайте ваучер (Ctrl+P или «Печать» в меню браузера) или перепишите "
        "код для гостя.",
        "The code is shown only now. Print the voucher (Ctrl+P or Print in the browser's menu) or write the "
        "code down for the guest.",
    ),
    "vouchers.issued_for": Text("Выдан: {name}, {document}", "Issued to: {name}, {document}"),
    "vouchers.back": Text("К списку ваучеров", "Back to vouchers"),
    # The printed card: every one of these is printed in both languages.
    "vouchers.card.title": Text("Бесплатный Wi-Fi", "Free Wi-Fi"),
    "vouchers.card.network": Text("Сеть", "Network"),
    "vouchers.card.network_unknown": Text("гостевая сеть Wi-Fi магазина", "the store's guest Wi-Fi"),
    "vouchers.card.code": Text("Код", "Code"),
    "vouchers.card.until": Text("Действует до", "Valid until"),
    "vouchers.card.devices": Text("Устройств", "Devices"),
    "vouchers.card.step1": Text("Подключитесь к сети {network}.", "Connect to the network {network}."),
    "vouchers.card.step2": Text(
        "Откроется страница входа. Если не открылась, откройте в браузере любой сайт.",
        "The sign-in page opens. If it does not, open any website in the browser.",
    ),
    "vouchers.card.step3": Text(
        "Выберите вход по ваучеру и введите код (заглавные или строчные буквы — неважно).",
        "Choose the voucher sign-in and type the code (capital or small letters, either works).",
    ),
    "vouchers.error.name_missing": Text(
        "Впишите фамилию, имя и отчество гостя, как в документе.", "Write the guest's full name as in the document."
    ),
    "vouchers.error.name_long": Text(
        "Имя слишком длинное: до 200 знаков.", "The name is too long: 200 characters at most."
    ),
    "vouchers.error.document_type": Text("Выберите документ из списка.", "Choose the document from the list."),
    "vouchers.error.document_ref": Text(
        "Номер документа: ровно 4 последних знака (цифры или латинские буквы), или оставьте поле пустым.",
        "Document number: exactly its last 4 characters (digits or Latin letters), or leave it empty.",
    ),
    "vouchers.error.valid_hours": Text(
        f"Срок действия: от 1 до {MAX_VALID_HOURS} часов.", f"Validity: 1 to {MAX_VALID_HOURS} hours."
    ),
    "vouchers.error.max_devices": Text(
        f"Устройств: от 1 до {MAX_DEVICES_LIMIT}.", f"Devices: 1 to {MAX_DEVICES_LIMIT}."
    ),
}
CARD_KEYS: Final = ("title", "network", "code", "until", "devices", "step2", "step3")

routes = web.RouteTableDef()


@dataclass(frozen=True)
class IssueForm:
    name: str = ""
    document: str = ""
    ref: str = ""
    hours: str = str(DEFAULT_VALID_HOURS)
    devices: str = str(DEFAULT_DEVICES)


def _session(request: web.Request) -> Session:
    session = request[SESSION]
    assert session is not None  # the console's sign-in guard admits no request without one
    return session


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _number(text: str, error_key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise VoucherError(error_key) from None


async def _list_page(
    request: web.Request, form: IssueForm, *, error_key: str | None = None, status: int = 200
) -> web.Response:
    vouchers = await request.app[VOUCHERS].list(LIST_LENGTH)
    return page(
        request,
        "vouchers.html",
        {
            "form": form,
            "error_key": error_key,
            "vouchers": vouchers,
            "now": datetime.now(UTC),
            "document_types": DOCUMENT_TYPES,
            "max_hours": MAX_VALID_HOURS,
            "max_devices": MAX_DEVICES_LIMIT,
        },
        status=status,
    )


@routes.get("/vouchers", name="vouchers")
async def voucher_list(request: web.Request) -> web.Response:
    return await _list_page(request, IssueForm())


@routes.post("/vouchers", name="vouchers")
async def issue(request: web.Request) -> web.Response:
    session = _session(request)
    data = await request.post()
    form = IssueForm(*(_field(data, f) for f in ("name", "document", "ref", "hours", "devices")))
    try:
        if form.document not in DOCUMENT_TYPES:
            raise VoucherError("vouchers.error.document_type")
        voucher, code = await request.app[VOUCHERS].issue(
            form.name,
            form.document,
            form.ref or None,
            session.username,
            _number(form.hours, "vouchers.error.valid_hours"),
            _number(form.devices, "vouchers.error.max_devices"),
        )
    except VoucherError as exc:
        return await _list_page(request, form, error_key=exc.key, status=400)
    network = request.app[VOUCHER_WIFI_NAME]
    cards = []
    for lang in LANGS:
        text = {key: translate(MESSAGES, lang, f"vouchers.card.{key}") for key in CARD_KEYS}
        shown = f"«{network}»" if network else translate(MESSAGES, lang, "vouchers.card.network_unknown")
        text["step1"] = translate(MESSAGES, lang, "vouchers.card.step1", network=shown)
        cards.append((lang, text))
    return page(
        request,
        "vouchers_print.html",
        {"voucher": voucher, "code": format_code(code), "network": network, "cards": cards},
    )


@routes.post(r"/vouchers/{voucher_id:\d{1,9}}/revoke", name="voucher_revoke")
async def revoke(request: web.Request) -> web.Response:
    await request.app[VOUCHERS].revoke(int(request.match_info["voucher_id"]), _session(request).username)
    return redirect(request.app.router["vouchers"].url_for())


def vouchers_console_feature(store: VoucherStore, *, wifi_name: str | None = None) -> ConsoleFeature:
    """`wifi_name`: the guest network's name (SSID) printed on vouchers; None: a general wording."""

    def setup(app: web.Application) -> None:
        app[VOUCHERS] = store
        app[VOUCHER_WIFI_NAME] = wifi_name

    return ConsoleFeature(
        name="vouchers",
        routes=routes,
        messages=MESSAGES,
        nav=(NavLink("/vouchers", "vouchers.nav"),),
        setup=setup,
    )
