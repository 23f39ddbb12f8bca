"""Vouchers: codes, the store on SQLite and PostgreSQL (issue, redeem, device limit, expiry,
revoke), and the console section over HTTP (issue with CSRF, the printable voucher, revoking)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.portal.vouchers import (
    ALPHABET,
    CODE_LENGTH,
    VoucherError,
    VoucherStore,
    code_digest,
    format_code,
    new_code,
    normalize_code,
)
from appliance.portal.vouchers_console import VOUCHER_WIFI_NAME, vouchers_console_feature
from appliance.storage.db import make_sessionmaker
from appliance.storage.models_promotions import VoucherRedemption, VoucherRow
from tests.guest_wifi_support import VIEWER, VIEWER_PASSWORD, Console, console_with
from tests.portal_support import portal_config, portal_system

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAC_A, MAC_B, MAC_C = "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02", "aa:bb:cc:00:00:03"
PRINTED_CODE = re.compile(r'<dd class="voucher-code">([A-Z0-9]{5}-[A-Z0-9]{5})</dd>')


# ----------------------------------------------------------------------------------- codes ---


def test_codes_avoid_look_alike_characters_and_are_random() -> None:
    assert not set("01OIL") & set(ALPHABET)
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == CODE_LENGTH and set(c) <= set(ALPHABET) for c in codes)
    # Every character of the alphabet turns up: nothing is stuck.
    assert set("".join(codes)) == set(ALPHABET)


def test_typing_is_forgiving() -> None:
    code = "KMX7P-ACE92"
    for typed in ("kmx7pace92", " KMX7P ACE92 ", "kmx7p–ace92", "КМХ7Р-АСЕ92"):  # the last one in Cyrillic
        assert normalize_code(typed) == "KMX7PACE92", typed
    assert format_code("KMX7PACE92") == code


# ------------------------------------------------------------------------------ the store ---


@pytest.fixture
def store(db_engine: AsyncEngine) -> VoucherStore:
    return VoucherStore(make_sessionmaker(db_engine))


async def _issue(store: VoucherStore, devices: int = 2, hours: int = 24, **kw: object) -> tuple[int, str]:
    voucher, code = await store.issue(
        str(kw.get("name", "Иванов Иван Иванович")),
        "passport_rf",
        kw.get("ref", "1234"),  # type: ignore[arg-type]
        "anna",
        hours,
        devices,
        now_utc=T0,
    )
    return voucher.id, code


async def test_issue_stores_only_a_hash_and_redeem_returns_the_identity(
    store: VoucherStore, db_engine: AsyncEngine
) -> None:
    voucher_id, code = await _issue(store)
    async with make_sessionmaker(db_engine)() as session:
        row = (await session.scalars(select(VoucherRow))).one()
    assert row.code_sha256 == code_digest(code) and code not in repr(row.__dict__)
    identity = await store.redeem(format_code(code).lower(), T0 + timedelta(hours=1), device_mac=MAC_A)
    assert identity is not None
    assert (identity.voucher_id, identity.guest_name, identity.document_type, identity.issued_by) == (
        voucher_id,
        "Иванов Иван Иванович",
        "passport_rf",
        "anna",
    )
    assert identity.max_devices == 2 and identity.valid_until == T0 + timedelta(hours=24)


async def test_wrong_and_malformed_codes_get_nothing(store: VoucherStore) -> None:
    _, code = await _issue(store)
    wrong = ("2" if code[0] != "2" else "3") + code[1:]
    for typed in (wrong, code[:-1], code + "2", "", "'; DROP TABLE vouchers; --", "Ы" * 10):
        assert await store.redeem(typed, T0) is None, typed


async def test_device_limit_counts_each_device_once(store: VoucherStore) -> None:
    voucher_id, code = await _issue(store, devices=2)
    assert await store.redeem(code, T0, device_mac=MAC_A) is not None
    assert await store.redeem(code, T0, device_mac=MAC_A.upper()) is not None  # the same phone again
    assert await store.redeem(code, T0, device_mac=MAC_B) is not None
    assert await store.redeem(code, T0, device_mac=MAC_C) is None  # a third device
    assert await store.redeem(code, T0, device_mac=MAC_B) is not None  # those in may come back
    voucher = await store.get(voucher_id)
    assert voucher is not None and voucher.devices_used == 2 and voucher.state(T0) == "used_up"


async def test_without_a_device_address_every_sign_in_counts(store: VoucherStore) -> None:
    _, code = await _issue(store, devices=2)
    assert await store.redeem(code, T0) is not None
    assert await store.redeem(code, T0, device_mac="not-a-mac") is not None
    assert await store.redeem(code, T0) is None


async def test_expiry_is_exact(store: VoucherStore) -> None:
    voucher_id, code = await _issue(store, hours=3)
    end = T0 + timedelta(hours=3)
    assert await store.redeem(code, end - timedelta(seconds=1)) is not None
    assert await store.redeem(code, end) is None
    voucher = await store.get(voucher_id)
    assert voucher is not None and voucher.state(end) == "expired" and voucher.state(T0) == "active"


async def test_revoke(store: VoucherStore) -> None:
    voucher_id, code = await _issue(store)
    assert await store.redeem(code, T0, device_mac=MAC_A) is not None
    assert await store.revoke(voucher_id, "boris", now_utc=T0)
    assert not await store.revoke(voucher_id, "boris")
    assert not await store.revoke(999_999, "boris")
    assert await store.redeem(code, T0, device_mac=MAC_A) is None
    voucher = await store.get(voucher_id)
    assert voucher is not None and voucher.state(T0) == "revoked" and voucher.revoked_by == "boris"


BAD_INPUT = [
    ({"name": " "}, "vouchers.error.name_missing"),
    ({"name": "Я" * 201}, "vouchers.error.name_long"),
    ({"ref": "12"}, "vouchers.error.document_ref"),
    ({"ref": "12;-"}, "vouchers.error.document_ref"),
    ({"hours": 0}, "vouchers.error.valid_hours"),
    ({"hours": 24 * 31}, "vouchers.error.valid_hours"),
    ({"devices": 0}, "vouchers.error.max_devices"),
    ({"devices": 11}, "vouchers.error.max_devices"),
]


async def test_purge_deletes_vouchers_and_their_devices_once_over(store: VoucherStore, db_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    old, old_code = await store.issue("Петров Пётр", "passport_rf", None, "anna", 2, 2, now_utc=now)
    young, _ = await store.issue("Сидорова Анна", "passport_rf", None, "anna", 24, 2, now_utc=now)
    assert await store.redeem(old_code, now, device_mac="aa:bb:cc:dd:ee:01") is not None
    assert await store.purge(old.valid_until) == 0, "still working until its last moment"
    assert await store.purge(old.valid_until + timedelta(seconds=1)) == 1
    async with make_sessionmaker(db_engine)() as session:
        assert [r.id for r in (await session.scalars(select(VoucherRow))).all()] == [young.id]
        assert (await session.scalars(select(VoucherRedemption))).all() == []


async def test_bad_input_is_refused_with_a_message_key(store: VoucherStore) -> None:
    for kwargs, key in BAD_INPUT:
        with pytest.raises(VoucherError) as info:
            await _issue(store, **kwargs)  # type: ignore[arg-type]
        assert info.value.key == key, kwargs
    assert await store.list() == []


async def test_list_newest_first_with_devices_used(store: VoucherStore, db_engine: AsyncEngine) -> None:
    first_id, first_code = await _issue(store, name="Первый Гость")
    second_id, _ = await _issue(store, name="Второй Гость", ref="ab12")
    await store.redeem(first_code, T0, device_mac=MAC_A)
    listed = await store.list()
    assert [(v.id, v.devices_used) for v in listed] == [(second_id, 0), (first_id, 1)]
    assert listed[0].document_ref_last4 == "AB12"
    async with make_sessionmaker(db_engine)() as session:
        assert len((await session.scalars(select(VoucherRedemption))).all()) == 1


# ------------------------------------------------------------------------------- console ---


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    def features(sessions, cfg):  # type: ignore[no-untyped-def]
        return [vouchers_console_feature(VoucherStore(sessions), wifi_name="Магазин_Гости")]

    async with console_with(tmp_path, features) as c:
        yield c


async def test_the_configured_network_name_reaches_the_printed_voucher(tmp_path: Path) -> None:
    cfg = portal_config(tmp_path, login={"wifi_name": " Ромашка-Гости "})
    async with portal_system(cfg) as system:
        [feature] = [f for f in system.console if f.name == "vouchers"]
        app = web.Application()
        assert feature.setup is not None
        feature.setup(app)
    assert app[VOUCHER_WIFI_NAME] == "Ромашка-Гости"


def _issue_form(token: str | None, **overrides: str) -> dict[str, str]:
    form = {"name": "Smith John", "document": "foreign_passport", "ref": "", "hours": "12", "devices": "2", **overrides}
    if token is not None:
        form["csrf_token"] = token
    return form


async def test_console_issues_a_printable_voucher_that_works(console: Console) -> None:
    token = await console.sign_in()
    resp = await console.client.post("/vouchers", data=_issue_form(token, ref="x7k9"))
    html = await resp.text()
    assert resp.status == 200
    match = PRINTED_CODE.search(html)
    assert match, "the page shows the code"
    assert "Магазин_Гости" in html and "/static/guest-wifi.css" in html
    # Both languages on the card, whatever the console's language.
    assert "Подключитесь к сети «Магазин_Гости»." in html and "Connect to the network «Магазин_Гости»." in html
    assert "Smith John" in html and "Паспорт иностранного гражданина" in html

    store = VoucherStore(console.sessions)
    identity = await store.redeem(match.group(1), datetime.now(UTC), device_mac=MAC_A)
    assert identity is not None and identity.guest_name == "Smith John" and identity.issued_by == "anna"
    listed = await (await console.client.get("/vouchers")).text()
    assert "Smith John" in listed and "···X7K9" in listed and "1 из 2" in listed
    assert match.group(1) not in listed  # the code is shown once, never in the list


async def test_print_stylesheet_hides_everything_but_the_voucher(console: Console) -> None:
    css = await (await console.client.get("/static/guest-wifi.css")).text()
    print_rules = css[css.index("@media print") :]
    assert ".top" in print_rules and ".no-print" in print_rules and "display: none" in print_rules


async def test_console_issue_needs_csrf(console: Console) -> None:
    await console.sign_in()
    resp = await console.client.post("/vouchers", data=_issue_form(None))
    assert resp.status == 403 and await VoucherStore(console.sessions).list() == []
    resp = await console.client.post("/vouchers", data=_issue_form("forged-token"))
    assert resp.status == 403 and await VoucherStore(console.sessions).list() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "Впишите фамилию, имя и отчество гостя"),
        ({"document": "driver_licence"}, "Выберите документ из списка"),
        ({"hours": "много"}, "Срок действия: от 1 до 720 часов"),
        ({"devices": "50"}, "Устройств: от 1 до 10"),
        ({"ref": "12345"}, "ровно 4 последних знака"),
    ],
)
async def test_console_explains_bad_input_and_keeps_the_form(
    console: Console, overrides: dict[str, str], message: str
) -> None:
    token = await console.sign_in()
    resp = await console.client.post("/vouchers", data=_issue_form(token, **overrides))
    html = await resp.text()
    assert resp.status == 400 and message in html and not PRINTED_CODE.search(html)
    assert await VoucherStore(console.sessions).list() == []


async def test_console_revoke_with_csrf(console: Console) -> None:
    token = await console.sign_in()
    html = await (await console.client.post("/vouchers", data=_issue_form(token))).text()
    code = PRINTED_CODE.search(html).group(1)  # type: ignore[union-attr]
    (voucher,) = await VoucherStore(console.sessions).list()

    refused = await console.client.post(f"/vouchers/{voucher.id}/revoke", data={})
    assert refused.status == 403
    assert await VoucherStore(console.sessions).redeem(code, datetime.now(UTC)) is not None

    resp = await console.client.post(
        f"/vouchers/{voucher.id}/revoke", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/vouchers"
    assert await VoucherStore(console.sessions).redeem(code, datetime.now(UTC)) is None
    listed = await (await console.client.get("/vouchers")).text()
    assert "Отозван" in listed and "отозвал anna" in listed


async def test_any_staff_member_can_issue(console: Console) -> None:
    token = await console.sign_in(VIEWER, VIEWER_PASSWORD)
    resp = await console.client.post("/vouchers", data=_issue_form(token, lang="en"))
    assert resp.status == 200 and PRINTED_CODE.search(await resp.text())
    (voucher,) = await VoucherStore(console.sessions).list()
    assert voucher.issued_by == VIEWER


async def test_vouchers_need_sign_in(console: Console) -> None:
    resp = await console.client.get("/vouchers", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/vouchers"
    resp = await console.client.post("/vouchers", data=_issue_form("x"), allow_redirects=False)
    assert resp.status == 303 and await VoucherStore(console.sessions).list() == []
