"""A guest's sign-in over real HTTP: the portal app with the gateway-less driver ("none"), the
production SMS.ru client against the local SMS.ru stand-in, and a migrated SQLite database."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appliance.bus import EventBus, Subscription
from appliance.config import Config
from appliance.portal.app import PORTAL_MAX_BODY_BYTES, create_portal_app
from appliance.portal.gateways.base import Device
from appliance.portal.notices import SmsBudgetReached
from appliance.portal.system import PortalSystem
from appliance.portal.visits import REMEMBER_COOKIE, VISIT_COOKIE
from appliance.web.ratelimit import Limit
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import (
    OTHER_PHONE,
    PHONE,
    Clocks,
    Guest,
    RecordingGateway,
    clocked,
    portal_config,
    portal_system,
)
from tests.web_support import assert_security_headers, csrf_token, serve

ERROR_BOX = re.compile(r'<p class="error-box" role="alert" id="(\w+)-error"><strong>[^<]+</strong> ([^<]+)</p>')
TIME = re.compile(r"\b\d\d:\d\d\b")


@dataclass
class Portal:
    cfg: Config
    system: PortalSystem
    app: web.Application
    sms: SmsRuStandIn
    bus: EventBus
    clocks: Clocks

    @asynccontextmanager
    async def guest(self, ip: str = "127.0.0.1", **headers: str) -> AsyncIterator[Guest]:
        """A guest's phone: its own address (so its own device) and cookie jar."""
        async with serve(self.app, source_ip=ip) as client:
            client.session.headers.update(headers)
            yield Guest(client)

    def code(self, phone: str = PHONE) -> str:
        code = self.sms.last_code(phone)
        assert code is not None, f"no SMS went to {phone}"
        return code


@pytest.fixture
async def sms() -> AsyncIterator[SmsRuStandIn]:
    async with SmsRuStandIn.running() as standin:
        yield standin


@asynccontextmanager
async def make_portal(tmp_path: Path, sms: SmsRuStandIn, **login: Any) -> AsyncIterator[Portal]:
    login = {"methods": ["sms", "call", "voucher"], **login}
    cfg = portal_config(tmp_path, sms=sms.sms_config(), login=login)
    bus = EventBus()
    async with portal_system(cfg, bus) as system:
        clocks = Clocks()
        clocked(system, clocks)
        yield Portal(cfg, system, create_portal_app(cfg, system), sms, bus, clocks)


@pytest.fixture
async def portal(tmp_path: Path, sms: SmsRuStandIn) -> AsyncIterator[Portal]:
    async with make_portal(tmp_path, sms) as p:
        yield p


def error_of(html: str) -> tuple[str, str] | None:
    match = ERROR_BOX.search(html)
    return (match.group(1), match.group(2)) if match else None


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def signed_in(portal: Portal, guest: Guest, phone: str = PHONE) -> Any:
    resp = await guest.ask_code(phone)
    assert resp.status == 303, await resp.text()
    done = await guest.enter_code(portal.code(phone))
    assert done.status == 303 and done.headers["Location"] == "/welcome"
    return done


# ------------------------------------------------------------------------- phone flow ---


async def test_phone_flow_from_the_first_page_to_online(portal: Portal) -> None:
    async with portal.guest() as guest:
        first = await guest.client.get("/")
        page = await first.text()
        assert first.status == 200 and '<html lang="ru">' in page
        assert_security_headers(first.headers)
        cookie = first.cookies[VISIT_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert '<label for="phone">Номер мобильного телефона</label>' in page
        assert '<label for="phone-pd">' in page and 'href="/consent/personal-data"' in page

        asked = await guest.ask_code("8 916 123 45 67", consent_promo="yes")
        assert (asked.status, asked.headers["Location"]) == (303, "/login/code")
        [message] = portal.sms.sent_to(PHONE)
        assert message.text == f"Код для Wi-Fi: {portal.code()}. Никому не сообщайте."
        code_page = await guest.open("/login/code")
        assert "Мы отправили SMS с кодом на номер +7 916 123-45-67." in code_page
        assert 'autocomplete="one-time-code"' in code_page and 'inputmode="numeric"' in code_page

        bad = await guest.enter_code(wrong(portal.code()))
        assert bad.status == 400
        assert error_of(await bad.text()) == (
            "code",
            "Код неверный. Осталось попыток: 4. Проверьте SMS и введите код ещё раз.",
        )
        done = await guest.enter_code(portal.code())
        assert (done.status, done.headers["Location"]) == (303, "/welcome")
        # A fresh visit id after login, and the device remembered for a month.
        assert done.cookies[VISIT_COOKIE].value != cookie.value
        remember = done.cookies[REMEMBER_COOKIE]
        assert remember["httponly"] and remember["samesite"] == "Lax" and remember["max-age"] == str(30 * 86400)

        welcome = await guest.open("/welcome")
        view = await portal.system.identification.active(Device("unknown", "127.0.0.1"))
        assert view is not None and view.session.promotions_consent and view.identity.phone_e164 == PHONE
        # No gateway driver: the guest is told the truth, not "connected".
        assert "роутер магазина ещё не подключён к порталу" in welcome and "Доступ открыт" not in welcome
        assert (await guest.open("/")).count("Вы вошли в гостевую сеть") == 2  # title and heading


async def test_english_errors_say_what_to_do(portal: Portal) -> None:
    async with portal.guest(**{"Accept-Language": "en-GB,en;q=0.8"}) as guest:
        refused = await guest.ask_code("+1 202 555 0100")
        assert refused.status == 400
        page = await refused.text()
        # The field points at its error and its hint; the number typed is kept.
        assert 'value="+1 202 555 0100" aria-invalid="true" aria-describedby="phone-error phone-hint">' in page
        assert error_of(page) == (
            "phone",
            "Codes are sent only to numbers with the country code +7. Enter such a number or ask the staff for a "
            "voucher.",
        )
        no_consent = await guest.post("/login/phone", {"phone": PHONE})
        html = await no_consent.text()
        assert error_of(html) is not None and "Tick the consent" in html
        assert 'id="phone-pd" name="consent_pd" value="yes" required aria-invalid="true"' in html
        await guest.ask_code(PHONE)
        bad = await guest.enter_code(wrong(portal.code()))
        assert "The code is wrong. Attempts left: 4. Check the SMS" in await bad.text()
        assert portal.sms.sent_to(PHONE)[-1].text.startswith("Wi-Fi code: ")


async def test_five_wrong_codes_lock_the_code(portal: Portal) -> None:
    async with portal.guest() as guest:
        await guest.ask_code()
        for left in (4, 3, 2, 1):
            html = await (await guest.enter_code(wrong(portal.code()))).text()
            assert f"Осталось попыток: {left}." in html
        locked = await guest.enter_code(wrong(portal.code()))
        assert error_of(await locked.text()) == (
            "code",
            "Код введён неверно слишком много раз и больше не действует. Запросите новый код.",
        )
        right = await guest.enter_code(portal.code())
        assert right.status == 400 and "больше не действует" in await right.text()


async def test_an_expired_code_asks_for_a_new_one(portal: Portal) -> None:
    async with portal.guest() as guest:
        await guest.ask_code()
        portal.clocks.wait(301)
        late = await guest.enter_code(portal.code())
        assert late.status == 400
        assert error_of(await late.text()) == (
            "code",
            "Этот код больше не действует: истёк срок или запрошен новый. Запросите новый код.",
        )


async def test_resend_waits_its_turn_then_replaces_the_code(portal: Portal) -> None:
    async with portal.guest() as guest:
        await guest.ask_code()
        first = portal.code()
        early = await guest.post("/login/resend", {}, page="/login/code")
        html = await early.text()
        assert early.status == 429 and early.headers["Retry-After"] == "60"
        kind, text = error_of(html) or ("", "")
        assert kind == "code" and text.startswith("Новый код можно запросить в ") and TIME.search(text)
        portal.clocks.wait(61)
        again = await guest.post("/login/resend", {}, page="/login/code")
        assert (again.status, again.headers["Location"]) == (303, "/login/code")
        assert len(portal.sms.sent_to(PHONE)) == 2
        # The first code means nothing for the new one (a clash has a chance of one in a million).
        old = await guest.enter_code(first)
        assert "Код неверный. Осталось попыток: 4." in await old.text()
        assert (await guest.enter_code(portal.code())).status == 303


async def test_reaching_the_daily_budget_alerts_the_owner_and_sends_guests_to_staff(
    tmp_path: Path, sms: SmsRuStandIn
) -> None:
    async with make_portal(tmp_path, sms, daily_sms_budget=1) as portal:
        notices: Subscription[SmsBudgetReached] = portal.bus.subscribe(SmsBudgetReached)
        async with portal.guest() as guest:
            assert (await guest.ask_code(PHONE)).status == 303
        async with portal.guest("127.0.0.2") as other:
            refused = await other.ask_code(OTHER_PHONE)
            assert refused.status == 503
            assert error_of(await refused.text()) == (
                "phone",
                "Коды по SMS на сегодня закончились. Попросите у сотрудников магазина ваучер для входа.",
            )
        notice = await asyncio.wait_for(notices.get(), 1)
        assert (notice.sent, notice.budget) == (1, 1)
        assert sms.sent_to(OTHER_PHONE) == []


async def test_a_provider_outage_is_explained(portal: Portal) -> None:
    portal.sms.mode = "down"
    async with portal.guest() as guest:
        down = await guest.ask_code()
        assert down.status == 503
        assert error_of(await down.text()) == (
            "phone",
            "Не удалось отправить код. Проверьте номер и попробуйте через минуту или попросите у сотрудников ваучер.",
        )


async def test_call_check_flow(portal: Portal) -> None:
    async with portal.guest() as guest:
        asked = await guest.ask_code(PHONE, method="call")
        assert asked.status == 303 and portal.sms.sent_to(PHONE) == []
        page = await guest.open("/login/code")
        assert "Позвоните с номера +7 916 123-45-67 на номер +78005008275." in page
        assert '<a href="tel:+78005008275">' in page
        early = await guest.post("/login/code", {}, page="/login/code")
        assert "Звонок пока не поступил. Осталось проверок: 4." in await early.text()
        portal.sms.confirm_call(PHONE)
        done = await guest.post("/login/code", {}, page="/login/code")
        assert (done.status, done.headers["Location"]) == (303, "/welcome")
    view = await portal.system.identification.active(Device("unknown", "127.0.0.1"))
    assert view is not None and view.session.method == "call"


# ------------------------------------------------------------------ no enumeration ---


def _normalised(html: str, phone_shown: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
    return TIME.sub("HH:MM", html.replace(phone_shown, "PHONE"))


async def test_a_busy_number_looks_exactly_like_any_other(portal: Portal) -> None:
    async with portal.guest("127.0.0.2") as first:
        await first.ask_code(OTHER_PHONE)
    async with portal.guest("127.0.0.3") as fresh, portal.guest("127.0.0.4") as busy:
        a = await fresh.ask_code(PHONE)
        b = await busy.ask_code(OTHER_PHONE)
        assert (a.status, a.headers["Location"]) == (b.status, b.headers["Location"])
        page_a = _normalised(await fresh.open("/login/code"), "+7 916 123-45-67")
        page_b = _normalised(await busy.open("/login/code"), "+7 916 987-65-43")
        assert page_a == page_b
    # The busy number got no second SMS.
    assert len(portal.sms.sent_to(OTHER_PHONE)) == 1 and len(portal.sms.sent_to(PHONE)) == 1


# ---------------------------------------------------------------------- other ways in ---


async def test_voucher_flow(portal: Portal) -> None:
    voucher, code = await portal.system.vouchers.issue("Петрова Анна", "passport_rf", None, "anna", 4, 1)
    async with portal.guest() as guest:
        wrong_voucher = await guest.post("/login/voucher", {"voucher": "ABCDE-FGHJK", "consent_pd": "yes"})
        assert wrong_voucher.status == 400
        assert error_of(await wrong_voucher.text()) == (
            "voucher",
            "Ваучер не подошёл. Проверьте код на ваучере и введите его ещё раз или обратитесь к сотрудникам.",
        )
        done = await guest.post("/login/voucher", {"voucher": f" {code[:5]} {code[5:]} ", "consent_pd": "yes"})
        assert (done.status, done.headers["Location"]) == (303, "/welcome")
    view = await portal.system.identification.active(Device("unknown", "127.0.0.1"))
    assert view is not None and view.identity.voucher_id == str(voucher.id)
    assert view.identity.guest_name == "Петрова Анна" and view.session.method == "voucher"


async def test_remembered_device_comes_back_without_sms_and_signout_forgets_it(portal: Portal) -> None:
    async with portal.guest() as guest:
        await signed_in(portal, guest)
        portal.clocks.wait(4 * 3600 + 1)
        back = await guest.open("/")
        assert "С возвращением!" in back and "+7 916 ***-**-67" in back and "123-45" not in back
        again = await guest.post("/login/relogin", {})
        assert (again.status, again.headers["Location"]) == (303, "/welcome")
        assert len(portal.sms.sent_to(PHONE)) == 1
        view = await portal.system.identification.active(Device("unknown", "127.0.0.1"))
        assert view is not None and view.session.relogin

        out = await guest.post("/signout", {}, page="/welcome")
        assert (out.status, out.headers["Location"]) == (303, "/")
        assert out.cookies[REMEMBER_COOKIE].value == ""
        page = await guest.open("/")
        assert "С возвращением!" not in page and 'action="/login/phone"' in page
    assert await portal.system.identification.active(Device("unknown", "127.0.0.1")) is None


# ------------------------------------------------------------- a gateway that sees MACs ---


@pytest.fixture
def gateway(portal: Portal) -> RecordingGateway:
    """A gateway that knows the MACs of 127.0.0.1 and .2 (as a neighbour table would), not of others."""
    gateway = RecordingGateway(macs={"127.0.0.1": "aa:bb:cc:00:00:01", "127.0.0.2": "aa:bb:cc:00:00:02"})
    clocked(portal.system, portal.clocks, gateway)
    return gateway


async def test_a_device_the_gateway_does_not_know_is_told_to_reconnect(
    portal: Portal, gateway: RecordingGateway
) -> None:
    async with portal.guest("127.0.0.5") as stranger:
        page = await stranger.open("/")
        assert "Не удалось определить ваше устройство" in page and "<form" not in page
        assert VISIT_COOKIE not in stranger.client.session.cookie_jar.filter_cookies(stranger.client.make_url("/"))


async def test_a_gateway_that_opens_access_says_until_when(portal: Portal, gateway: RecordingGateway) -> None:
    async with portal.guest() as guest:
        await signed_in(portal, guest)
        welcome = await guest.open("/welcome")
        view = await portal.system.identification.active(Device("aa:bb:cc:00:00:01", "127.0.0.1"))
        assert view is not None and "aa:bb:cc:00:00:01" in gateway.allowed
        local_end = view.session.expires_utc.astimezone(portal.system.tz).strftime("%H:%M")
        assert welcome.count("Вы подключены к Интернету") == 2
        assert f"Доступ открыт до {local_end}." in welcome


async def test_another_device_gets_nothing_from_a_copied_cookie(portal: Portal, gateway: RecordingGateway) -> None:
    async with portal.guest() as owner:
        await signed_in(portal, owner)
        jar = owner.client.session.cookie_jar
        token = jar.filter_cookies(owner.client.make_url("/"))[REMEMBER_COOKIE].value
    assert set(gateway.allowed) == {"aa:bb:cc:00:00:01"}
    async with portal.guest("127.0.0.2") as thief:
        thief.client.session.cookie_jar.update_cookies({REMEMBER_COOKIE: token})
        page = await thief.open("/")
        assert "С возвращением!" not in page
        refused = await thief.post("/login/relogin", {})
        assert refused.status == 400 and "больше не запомнено" in await refused.text()
    assert set(gateway.allowed) == {"aa:bb:cc:00:00:01"}


async def test_a_gateway_that_needs_the_browser_gets_it_from_the_welcome_page(
    portal: Portal, gateway: RecordingGateway
) -> None:
    gateway.finish_url = "http://192.168.8.1:2050/opennds_auth/?tok=4f2a&redir=http%3A%2F%2F192.168.8.2%2F"
    async with portal.guest() as guest:
        done = await signed_in(portal, guest)
        # Our own page first: a form's answer never redirects to another address.
        assert done.headers["Location"] == "/welcome"
        welcome = await guest.open("/welcome")
    escaped = gateway.finish_url.replace("&", "&amp;")
    assert f'<meta http-equiv="refresh" content="0;url={escaped}">' in welcome
    assert f'<a href="{escaped}">' in welcome


async def test_a_gateway_refusal_is_explained(portal: Portal, gateway: RecordingGateway) -> None:
    gateway.refuse = True
    async with portal.guest() as guest:
        await guest.ask_code()
        refused = await guest.enter_code(portal.code())
        assert refused.status == 503
        assert error_of(await refused.text()) == (
            "code",
            "Вы прошли идентификацию, но открыть доступ не удалось. Попробуйте через минуту; если не получится, "
            "обратитесь к сотрудникам.",
        )


# ----------------------------------------------------------------------------- defences ---


async def test_every_post_needs_the_visits_csrf_token(portal: Portal) -> None:
    async with portal.guest() as guest:
        await guest.open("/")
        forms = {
            "/login/phone": {"phone": PHONE, "consent_pd": "yes"},
            "/login/code": {"code": "123456"},
            "/login/resend": {},
            "/login/voucher": {"voucher": "ABCDE-FGHJK", "consent_pd": "yes"},
            "/login/relogin": {},
            "/signout": {},
        }
        for path, data in forms.items():
            for token in (None, "forged-token"):
                sent = {**data, **({"csrf_token": token} if token else {})}
                resp = await guest.client.post(path, data=sent, allow_redirects=False)
                assert resp.status == 403 and "Форма устарела" in await resp.text(), path
    async with portal.guest("127.0.0.2") as other:
        # A token of another visit is no token at all.
        token = csrf_token(await other.open("/"))
    async with portal.guest() as guest:
        await guest.open("/")
        resp = await guest.client.post("/login/phone", data={"csrf_token": token, "phone": PHONE, "consent_pd": "yes"})
        assert resp.status == 403
    assert portal.sms.messages == []


XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


class _Markup(HTMLParser):
    """Elements and attributes that could run code: scripts, event handlers, javascript: links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed") or (tag == "img" and ("src", "x") in attrs):
            self.found.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}")


def active_markup(html: str) -> list[str]:
    parser = _Markup()
    parser.feed(html)
    return parser.found


async def test_xss_payloads_in_every_field_are_inert(portal: Portal) -> None:
    async with portal.guest() as guest:
        pages = [
            await (await guest.post("/login/phone", {"phone": XSS, "consent_pd": "yes"})).text(),
            await (await guest.post("/login/voucher", {"voucher": XSS, "consent_pd": "yes"})).text(),
            await guest.open(f"/?dst={XSS}"),
            await guest.open(f"/?lang={XSS}"),
            await guest.open(f"/consent/{XSS}"),
        ]
        await guest.ask_code()
        pages.append(await (await guest.enter_code(XSS)).text())
        pages.append(await (await guest.post("/login/code", {"code": XSS[:16]}, page="/login/code")).text())
    for html in pages:
        assert active_markup(html) == []


@pytest.mark.parametrize("param", ["redirect", "dst"])
async def test_an_outside_address_is_never_redirected_to(portal: Portal, param: str) -> None:
    async with portal.guest() as guest:
        first = await guest.client.get(f"/?{param}=https://evil.example/steal", allow_redirects=False)
        assert first.status == 200
        done = await signed_in(portal, guest)
        assert done.headers["Location"] == "/welcome"
        welcome = await guest.open("/welcome")
        # Shown as a plain link, after login, and only because it is another site over http(s).
        assert '<a href="https://evil.example/steal" rel="noopener noreferrer">Перейти на evil.example</a>' in welcome


@pytest.mark.parametrize(
    "target",
    ["javascript:alert(1)", "//evil.example/", "ftp://evil.example/", "https://user:pw@evil.example/", "/welcome"],
)
async def test_unsafe_destinations_are_dropped(portal: Portal, target: str) -> None:
    async with portal.guest() as guest:
        await guest.open(f"/?dst={target}")
        await signed_in(portal, guest)
        welcome = await guest.open("/welcome")
        assert "Перейти на" not in welcome and "evil" not in welcome and "javascript" not in welcome


async def test_own_address_is_not_a_destination(portal: Portal) -> None:
    async with portal.guest() as guest:
        await guest.open("/?dst=" + str(guest.client.make_url("/venue")))
        await signed_in(portal, guest)
        assert "Перейти на" not in await guest.open("/welcome")


async def test_a_flood_of_posts_from_one_address_is_slowed(tmp_path: Path, sms: SmsRuStandIn) -> None:
    async with make_portal(tmp_path, sms) as portal:
        portal.app = create_portal_app(portal.cfg, portal.system, post_limit=Limit(3, 60, 60))
        async with portal.guest() as guest:
            statuses = [(await guest.post("/login/voucher", {"voucher": "X"})).status for _ in range(4)]
            assert statuses[:2] == [400, 400] and statuses[2:] == [429, 429]
            last = await guest.post("/login/voucher", {"voucher": "X"})
            assert "Подождите минуту" in await last.text() and last.headers["Retry-After"] == "60"


async def test_a_guest_form_bigger_than_a_phone_number_needs_is_refused(portal: Portal) -> None:
    async with portal.guest() as guest:
        resp = await guest.post(
            "/login/phone", {"phone": "+7" + "9" * (PORTAL_MAX_BODY_BYTES + 1), "consent_pd": "yes"}
        )
        assert resp.status == 413 and "Слишком много данных" in await resp.text()
    assert portal.sms.sent_to(PHONE) == []


async def test_consent_documents_are_separate_pages_with_their_version(portal: Portal) -> None:
    async with portal.guest() as guest:
        pd = await guest.open("/consent/personal-data")
        promo = await guest.open("/consent/promotions")
    version = portal.system.consent.recorded_version
    assert version.startswith("2025-09-01#") and f"Редакция {version}" in pd and f"Редакция {version}" in promo
    assert "Магазин у дома" in pd and "183 дней" in pd and "Постановление Правительства РФ № 758" in pd
    assert "необязательно" in promo and "доступ в Интернет от него не зависит" in promo
