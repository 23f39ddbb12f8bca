"""The console's guest Wi-Fi section over real HTTP: who is online, ending a session, and the
identification log with its date filter and its recorded CSV export."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.portal import guests_console
from appliance.portal.gateways.base import Device
from appliance.portal.identify import Consent, LoggedIn
from appliance.portal.log_export import BOM, COLUMNS
from appliance.portal.system import PortalSystem
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.models_guests import GuestLogExport
from appliance.storage.users import UserStore
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import PHONE, portal_config, portal_system
from tests.web_support import csrf_token, login, serve, user_store

Client = TestClient[Any, Any]
VIEWER, VIEWER_PASSWORD = "vera", "viewer password 123"
PHONE_DEVICE_FIELDS = ("aa:bb:cc:00:00:01", "10.99.0.11")
PHONE_DEVICE = Device(*PHONE_DEVICE_FIELDS)
VOUCHER_DEVICE = Device("aa:bb:cc:00:00:02", "10.99.0.12")
FORMULA_NAME = "=HYPERLINK(1) Иванов"


@dataclass
class Shop:
    cfg: Config
    system: PortalSystem
    users: UserStore
    phone_session: str
    voucher_session: str

    @property
    def app(self) -> Any:
        return create_console_app(self.cfg, self.users, StatusBoard(), list, features=self.system.console)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async with SmsRuStandIn.running() as sms:
        cfg = portal_config(tmp_path, sms=sms.sms_config())
        async with portal_system(cfg) as system, user_store(cfg) as users:
            await users.add(VIEWER, VIEWER_PASSWORD, role="viewer")
            service = system.identification
            sent = await service.request_code(PHONE_DEVICE, PHONE, Consent(True), "ru")
            code = sms.last_code(PHONE)
            assert code is not None and not isinstance(sent, Exception)
            by_phone = await service.confirm_code(PHONE_DEVICE, sent.request_id, code, Consent(True))  # type: ignore[union-attr]
            _, voucher = await system.vouchers.issue(FORMULA_NAME, "foreign_passport", None, "anna", 4, 1)
            by_voucher = await service.redeem_voucher(VOUCHER_DEVICE, voucher, Consent(True))
            assert isinstance(by_phone, LoggedIn) and isinstance(by_voucher, LoggedIn)
            yield Shop(cfg, system, users, by_phone.session_id, by_voucher.session_id)


async def signed_in(client: Client, username: str, password: str) -> str:
    assert (await login(client, username, password)).status == 303
    return csrf_token(await (await client.get("/")).text())


def _today(shop: Shop) -> str:
    return datetime.now(shop.system.tz).date().isoformat()


async def test_staff_see_who_is_online_with_numbers_partly_hidden(shop: Shop) -> None:
    async with serve(shop.app) as client:
        await signed_in(client, VIEWER, VIEWER_PASSWORD)
        page = await (await client.get("/guests")).text()
    assert '<a href="/guests" aria-current="page">Гости Wi-Fi</a>' in page
    assert "+7 916 ***-**-67" in page and "123-45" not in page
    assert "ваучер № " in page and "=HYPERLINK(1) Иванов" in page
    assert "aa:bb:cc:00:00:01" in page and "Кодов отправлено сегодня: 1 из 300." in page
    assert 'href="/guests/log"' not in page  # the log is for administrators


async def test_ending_a_session_closes_access_and_forgets_the_device(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(shop.app) as client:
        token = await signed_in(client, VIEWER, VIEWER_PASSWORD)
        forged = await client.post(f"/guests/{shop.phone_session}/revoke", data={}, allow_redirects=False)
        assert forged.status == 403
        assert await shop.system.identification.active(PHONE_DEVICE) is not None
        with caplog.at_level(logging.INFO, logger="appliance.audit"):
            done = await client.post(
                f"/guests/{shop.phone_session}/revoke", data={"csrf_token": token}, allow_redirects=False
            )
        [audited] = [r for r in caplog.records if r.name == "appliance.audit"]
        assert (audited.audit, audited.user, audited.session) == (  # type: ignore[attr-defined]
            "guest_session_revoke",
            VIEWER,
            shop.phone_session,
        )
        assert (done.status, done.headers["Location"]) == (303, "/guests?done=revoked")
        assert "Сеанс завершён, доступ закрыт." in await (await client.get(done.headers["Location"])).text()
        again = await client.post(
            f"/guests/{shop.phone_session}/revoke", data={"csrf_token": token}, allow_redirects=False
        )
        assert again.headers["Location"] == "/guests?done=gone"
        unknown = await client.post("/guests/not-a-session/revoke", data={"csrf_token": token})
        assert unknown.status == 404
    assert await shop.system.identification.active(PHONE_DEVICE) is None
    view = await shop.system.guests.session(shop.phone_session)
    assert view is not None and view.session.end_reason == "revoked"
    assert await shop.system.identification.remembered(PHONE_DEVICE, None) is None


async def test_the_log_is_for_administrators(shop: Shop) -> None:
    async with serve(shop.app) as client:
        token = await signed_in(client, VIEWER, VIEWER_PASSWORD)
        page = await client.get("/guests/log")
        assert page.status == 403 and "Только для администратора" in await page.text()
        export = await client.post("/guests/log/export", data={"csrf_token": token, "request_ref": "№ 1"})
        assert export.status == 403


async def test_log_filters_by_local_dates_and_text(shop: Shop) -> None:
    async with serve(shop.app) as client:
        await signed_in(client, "anna", "correct horse battery")
        page = await (await client.get("/guests/log")).text()
        assert "Найдено записей: 2." in page and "+7 916 123-45-67" in page
        assert "паспорт иностранного гражданина" in page
        only_voucher = await (await client.get("/guests/log", params={"q": "aa:bb:cc:00:00:02"})).text()
        assert "Найдено записей: 1." in only_voucher and "+7 916" not in only_voucher
        tomorrow = (datetime.now(shop.system.tz).date() + timedelta(days=1)).isoformat()
        empty = await (await client.get("/guests/log", params={"from": tomorrow, "to": tomorrow})).text()
        assert "За эти дни записей нет." in empty
        bad = await client.get("/guests/log", params={"from": "2026-13-01"})
        assert bad.status == 400 and "Дата не распознана" in await bad.text()


async def test_export_needs_the_request_and_is_recorded(
    shop: Shop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guests_console, "EXPORT_BATCH_ROWS", 1)  # each row its own batch: the file streams
    async with serve(shop.app) as client:
        token = await signed_in(client, "anna", "correct horse battery")
        fields = {"csrf_token": token, "from": _today(shop), "to": _today(shop), "q": ""}
        missing = await client.post("/guests/log/export", data=fields)
        assert missing.status == 400 and "Укажите запрос" in await missing.text()
        with caplog.at_level(logging.INFO, logger="appliance.audit"):
            resp = await client.post("/guests/log/export", data={**fields, "request_ref": "№ 123 от 01.02.2026, ОМВД"})
        body = await resp.read()
        page = await (await client.get("/guests/log")).text()
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "Content-Length" not in resp.headers, "streamed in pieces, not built whole in memory"
    day = _today(shop).replace("-", "")
    assert resp.headers["Content-Disposition"] == f'attachment; filename="guest-log-{day}-{day}.csv"'
    text = body.decode("utf-8")
    assert text.startswith(BOM)
    # Semicolons: what Excel on a Russian computer splits columns on when the file is double-clicked.
    assert text.removeprefix(BOM).startswith("session_id;method;relogin;phone_e164;")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix(BOM)), delimiter=";"))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 2
    by_id = {r["session_id"]: r for r in rows}
    phone, voucher = by_id[shop.phone_session], by_id[shop.voucher_session]
    assert (phone["phone_e164"], phone["mac"], phone["ip"], phone["method"]) == (PHONE, *PHONE_DEVICE_FIELDS, "sms")
    assert phone["gateway"] == "none" and phone["consent_version"] == shop.system.consent.recorded_version
    start = datetime.fromisoformat(phone["start_utc"])
    assert start.tzinfo == UTC and datetime.fromisoformat(phone["start_local"]) == start
    assert phone["start_local"].endswith("+03:00")
    # A name that a spreadsheet would run as a formula is made plain text.
    assert voucher["guest_name"] == "'" + FORMULA_NAME and voucher["document_type"] == "foreign_passport"
    assert voucher["issued_by"] == "anna" and voucher["phone_e164"] == ""

    digest = hashlib.sha256(body).hexdigest()
    engine = create_engine(shop.cfg.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            [record] = (await session.scalars(select(GuestLogExport))).all()
    finally:
        await engine.dispose()
    assert (record.username, record.request_ref, record.rows, record.sha256) == (
        "anna",
        "№ 123 от 01.02.2026, ОМВД",
        2,
        digest,
    )
    started, done = [r for r in caplog.records if r.name == "appliance.audit"]
    assert started.getMessage() == "identification log export started" and done.getMessage() == (
        "identification log exported"
    )
    assert (done.audit, done.user, done.rows, done.sha256) == ("guest_log_export", "anna", 2, digest)  # type: ignore[attr-defined]
    assert started.request_ref == done.request_ref == "№ 123 от 01.02.2026, ОМВД"  # type: ignore[attr-defined]
    assert "№ 123 от 01.02.2026, ОМВД" in page and digest in page  # listed under recent exports


async def test_typed_text_is_shown_inert_in_the_console(shop: Shop) -> None:
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    _, code = await shop.system.vouchers.issue(payload, "passport_rf", None, "anna", 4, 1)
    assert isinstance(
        await shop.system.identification.redeem_voucher(Device("aa:bb:cc:00:00:09", "10.99.0.19"), code, Consent(True)),
        LoggedIn,
    )
    async with serve(shop.app) as client:
        token = await signed_in(client, "anna", "correct horse battery")
        fields = {"csrf_token": token, "from": _today(shop), "to": _today(shop), "request_ref": payload}
        assert (await client.post("/guests/log/export", data=fields)).status == 200
        pages = [
            await (await client.get("/guests")).text(),
            await (await client.get("/guests/log", params={"q": payload[:60]})).text(),
            await (await client.get("/guests/log")).text(),
        ]
    for page in pages:
        assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0] and "&lt;script&gt;" in pages[2]
