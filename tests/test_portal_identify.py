"""The identification service on SQLite and PostgreSQL: codes, limits, the SMS budget, vouchers,
remembered devices, session ends and the purge. The SMS provider and the gateway are test
doubles here (their real drivers have their own tests); the stores are the real ones."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.bus import EventBus, Subscription
from appliance.portal.codes import CodeHasher
from appliance.portal.gateways.base import Device
from appliance.portal.identify import CodeSent, Consent, IdentificationService, LoggedIn, Refused, WrongCode
from appliance.portal.notices import SmsBudgetReached
from appliance.portal.settings import LoginSettings
from appliance.portal.sms.base import SmsError
from appliance.portal.upkeep import Purge, SessionSweeper
from appliance.portal.vouchers import VoucherStore
from appliance.storage.db import make_sessionmaker
from appliance.storage.guest_codes import CodeStore, SmsBudget
from appliance.storage.guests import GuestStore
from appliance.storage.models_guests import GuestCodeRequest, GuestSession
from appliance.storage.models_promotions import VoucherRow
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import OTHER_PHONE, PHONE, CapturingSms, RecordingGateway, portal_config, portal_system

MOSCOW = ZoneInfo("Europe/Moscow")
# 20:40 UTC is 23:40 in Moscow: the store's day is still 2026-11-27.
T0 = datetime(2026, 11, 27, 20, 40, tzinfo=UTC)
PHONE_DEVICE = Device(mac="aa:bb:cc:00:00:01", ip="10.99.0.11")
OTHER_DEVICE = Device(mac="aa:bb:cc:00:00:02", ip="10.99.0.12")
YES = Consent(personal_data=True)
KEY = b"k" * 32


@dataclass
class Rig:
    engine: AsyncEngine
    sms: CapturingSms = field(default_factory=CapturingSms)
    gateway: RecordingGateway = field(default_factory=RecordingGateway)
    bus: EventBus = field(default_factory=EventBus)
    now: datetime = T0
    mono: float = 1000.0
    consent_version: str = "v1#aaaa"
    settings: LoginSettings = field(default_factory=LoginSettings)

    def service(self, **login: Any) -> IdentificationService:
        if login:
            self.settings = LoginSettings(**login)
        sessions = make_sessionmaker(self.engine)
        return IdentificationService(
            self.settings,
            codes=CodeStore(sessions),
            budget=SmsBudget(sessions),
            guests=GuestStore(sessions),
            gateway=self.gateway,
            hasher=CodeHasher(KEY),
            bus=self.bus,
            tz=MOSCOW,
            consent_version=self.consent_version,
            sms=self.sms,
            vouchers=VoucherStore(sessions),
            clock=lambda: self.now,
            monotonic=lambda: self.mono,
        )

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    async def rows(self, model: Any) -> list[Any]:
        async with make_sessionmaker(self.engine)() as session:
            return list((await session.scalars(select(model))).all())


@pytest.fixture
def rig(db_engine: AsyncEngine) -> Rig:
    return Rig(db_engine)


async def _code(
    service: IdentificationService, rig: Rig, device: Device = PHONE_DEVICE, phone: str = PHONE
) -> CodeSent:
    sent = await service.request_code(device, phone, YES, "ru")
    assert isinstance(sent, CodeSent), sent
    return sent


async def _login(
    service: IdentificationService, rig: Rig, device: Device = PHONE_DEVICE, phone: str = PHONE
) -> LoggedIn:
    sent = await _code(service, rig, device, phone)
    done = await service.confirm_code(device, sent.request_id, rig.sms.last_code(phone), YES)
    assert isinstance(done, LoggedIn), done
    return done


# ------------------------------------------------------------------------------ codes ---


async def test_phone_flow_logs_who_which_device_how_and_under_which_consent(rig: Rig) -> None:
    service = rig.service()
    sent = await service.request_code(PHONE_DEVICE, "8 (916) 123-45-67", Consent(True, promotions=True), "ru")
    assert isinstance(sent, CodeSent) and sent.phone.e164 == PHONE
    assert sent.expires_utc == T0 + timedelta(seconds=300)
    [(to, text)] = rig.sms.sent
    code = rig.sms.last_code()
    assert to == PHONE and text == f"Код для Wi-Fi: {code}. Никому не сообщайте." and len(code) == 6
    [stored] = await rig.rows(GuestCodeRequest)
    # Only a keyed hash of the code is kept.
    assert stored.code_digest == CodeHasher(KEY).digest(stored.id, code) != code

    done = await service.confirm_code(PHONE_DEVICE, sent.request_id, f" {code} ", Consent(True, promotions=True))
    assert isinstance(done, LoggedIn) and done.remember_token and done.finish_url is None
    view = await service.active(PHONE_DEVICE)
    assert view is not None and view.identity.phone_e164 == PHONE
    row = view.session
    assert (row.id, row.method, row.relogin, row.mac, row.ip) == (
        done.session_id,
        "sms",
        False,
        PHONE_DEVICE.mac,
        PHONE_DEVICE.ip,
    )
    assert (row.gateway, row.consent_version, row.promotions_consent) == ("recording", "v1#aaaa", True)
    assert row.provider_id == "id-1" and row.start_utc == T0 and row.expires_utc == T0 + timedelta(hours=4)
    grant = rig.gateway.allowed[PHONE_DEVICE.mac]
    assert (grant.session_id, grant.session_timeout_s, grant.idle_timeout_s) == (row.id, 4 * 3600, 30 * 60)
    # The code is spent: a second use does nothing.
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, code, YES) == Refused("code.expired")


async def test_wrong_codes_count_down_then_even_the_right_code_is_refused(rig: Rig) -> None:
    service = rig.service()
    sent = await _code(service, rig)
    right = rig.sms.last_code()
    wrong = "000000" if right != "000000" else "111111"
    outcomes = [await service.confirm_code(PHONE_DEVICE, sent.request_id, wrong, YES) for _ in range(5)]
    assert outcomes == [WrongCode(4), WrongCode(3), WrongCode(2), WrongCode(1), Refused("code.locked")]
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, right, YES) == Refused("code.locked")
    assert await service.active(PHONE_DEVICE) is None and not rig.gateway.allowed


async def test_parallel_guesses_cannot_spend_more_than_the_attempts(rig: Rig) -> None:
    service = rig.service()
    sent = await _code(service, rig)
    wrong = "000000" if rig.sms.last_code() != "000000" else "111111"
    outcomes = await asyncio.gather(
        *(service.confirm_code(PHONE_DEVICE, sent.request_id, wrong, YES) for _ in range(12))
    )
    assert sum(isinstance(o, WrongCode) for o in outcomes) == 4
    assert outcomes.count(Refused("code.locked")) == 8
    [stored] = await rig.rows(GuestCodeRequest)
    assert stored.attempts_left == 0 and stored.status == "locked"


async def test_the_right_code_sent_twice_at_once_logs_in_once(rig: Rig) -> None:
    service = rig.service()
    sent = await _code(service, rig)
    outcomes = await asyncio.gather(
        *(service.confirm_code(PHONE_DEVICE, sent.request_id, rig.sms.last_code(), YES) for _ in range(3))
    )
    assert sum(isinstance(o, LoggedIn) for o in outcomes) == 1
    assert outcomes.count(Refused("code.expired")) == 2
    assert len(await rig.rows(GuestSession)) == 1


async def test_code_format_costs_no_attempt_and_a_code_works_only_in_time_and_for_its_device(rig: Rig) -> None:
    service = rig.service()
    sent = await _code(service, rig)
    code = rig.sms.last_code()
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, "12 34", YES) == Refused("code.format")
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, "١٢٣٤٥٦", YES) == Refused("code.format")
    assert await service.confirm_code(OTHER_DEVICE, sent.request_id, code, YES) == Refused("code.expired")
    [stored] = await rig.rows(GuestCodeRequest)
    assert stored.attempts_left == 4  # only the other device's try was spent
    rig.wait(301)
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, code, YES) == Refused("code.expired")


async def test_a_new_code_replaces_the_last_one(rig: Rig) -> None:
    service = rig.service(resend_after_s=10)
    first = await _code(service, rig)
    first_code = rig.sms.last_code()
    rig.wait(11)
    second = await service.request_code(PHONE_DEVICE, PHONE, YES, "en", replaces=first.request_id)
    assert isinstance(second, CodeSent)
    assert rig.sms.sent[-1][1] == f"Wi-Fi code: {rig.sms.last_code()}. Do not share it."
    assert await service.confirm_code(PHONE_DEVICE, first.request_id, first_code, YES) == Refused("code.expired")
    assert isinstance(await service.confirm_code(PHONE_DEVICE, second.request_id, rig.sms.last_code(), YES), LoggedIn)


async def test_a_failed_resend_leaves_the_last_code_working(rig: Rig) -> None:
    service = rig.service(resend_after_s=10)
    first = await _code(service, rig)
    code = rig.sms.last_code()
    rig.wait(11)
    rig.sms.failure = SmsError("SMS.ru is temporarily unavailable (code 220); the guest can try again")
    again = await service.request_code(PHONE_DEVICE, PHONE, YES, "ru", replaces=first.request_id)
    assert again == Refused("code.not_sent")
    assert isinstance(await service.confirm_code(PHONE_DEVICE, first.request_id, code, YES), LoggedIn)


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("12345", "phone.invalid"),
        ("not a number", "phone.invalid"),
        ("+7" + "9" * 40, "phone.invalid"),
        ("+1 202 555 0100", "phone.country"),
        ("+7 495 123-45-67", "phone.not_mobile"),
    ],
)
async def test_numbers_that_cannot_get_a_code(rig: Rig, typed: str, key: str) -> None:
    service = rig.service()
    assert await service.request_code(PHONE_DEVICE, typed, YES, "ru") == Refused(key)
    assert rig.sms.sent == [] and await rig.rows(GuestCodeRequest) == []


async def test_no_code_without_the_personal_data_consent(rig: Rig) -> None:
    service = rig.service()
    refused = await service.request_code(PHONE_DEVICE, PHONE, Consent(False, promotions=True), "ru")
    assert refused == Refused("consent.required") and rig.sms.sent == []


# ------------------------------------------------------------------------------ limits ---


async def test_a_number_over_its_limit_gets_the_same_answer_but_no_sms(rig: Rig) -> None:
    service = rig.service(resend_after_s=60)
    fresh = await _code(service, rig)
    # The same number from another device, before its pause is over: nothing is sent, but the
    # answer has the same shape as the first one (no way to tell a busy or known number).
    busy = await service.request_code(OTHER_DEVICE, PHONE, YES, "ru")
    assert isinstance(busy, CodeSent) and len(rig.sms.sent) == 1
    assert (busy.phone, busy.method, busy.expires_utc, busy.call_number) == (
        fresh.phone,
        fresh.method,
        fresh.expires_utc,
        None,
    )
    wrong = "000000" if rig.sms.last_code() != "000000" else "111111"
    # The decoy behaves like a code: tries count down, nothing lets the guesser in.
    assert await service.confirm_code(OTHER_DEVICE, busy.request_id, wrong, YES) == WrongCode(4)
    assert await service.confirm_code(OTHER_DEVICE, busy.request_id, rig.sms.last_code(), YES) == WrongCode(3)


async def test_codes_per_number_pause_doubles_then_the_number_rests(rig: Rig) -> None:
    service = rig.service(resend_after_s=60, codes_per_number=3, codes_per_device=50, codes_per_ip=50)
    devices = [Device(mac=f"aa:bb:cc:00:01:{i:02x}", ip=f"10.99.1.{i}") for i in range(10)]
    await _code(service, rig, devices[0])
    assert service.next_code_in(PHONE, devices[1]) == pytest.approx(60)
    rig.wait(61)
    await _code(service, rig, devices[1])
    assert service.next_code_in(PHONE, devices[2]) == pytest.approx(120)  # twice the first pause
    rig.wait(121)
    await _code(service, rig, devices[2])
    assert len(rig.sms.sent) == 3
    # The third code used up the hour: the number rests, whatever device asks.
    rig.wait(600)
    await _code(service, rig, devices[3])
    assert len(rig.sms.sent) == 3
    rig.wait(3600)
    await _code(service, rig, devices[4])
    assert len(rig.sms.sent) == 4


async def test_a_restart_gives_neither_a_number_nor_a_device_a_fresh_allowance(rig: Rig) -> None:
    limits = {"resend_after_s": 60, "codes_per_number": 3, "codes_per_device": 2, "codes_per_ip": 50}
    service = rig.service(**limits)
    devices = [Device(mac=f"aa:bb:cc:00:01:{i:02x}", ip=f"10.99.1.{i}") for i in range(10)]
    await _code(service, rig, devices[0])
    rig.wait(61)
    await _code(service, rig, devices[1])
    rig.wait(121)
    await _code(service, rig, devices[2])  # the number's third code: it rests for the hour
    rig.wait(10)
    await _code(service, rig, devices[3])  # a decoy: hits the device, not the number
    await _code(service, rig, devices[4], OTHER_PHONE)
    rig.wait(61)
    await _code(service, rig, devices[4], "+79160000001")  # the device's second code: it rests too
    assert len(rig.sms.sent) == 5
    rig.wait(1200)

    restarted = rig.service(**limits)
    assert await restarted.restore_limits() == 6
    await _code(restarted, rig, devices[5])
    assert len(rig.sms.sent) == 5, "the number still rests after the restart"
    refused = await restarted.request_code(devices[4], "+79160000002", YES, "ru")
    assert isinstance(refused, Refused) and refused.key == "code.device_limited"
    assert refused.wait_s == pytest.approx(3600 - 1200, abs=1)
    # Replayed as it happened: the decoy's device had one hit, so it may ask once more.
    await _code(restarted, rig, devices[3], "+79160000003")
    assert len(rig.sms.sent) == 6

    rig.wait(2 * 3600)
    fresh = rig.service(**limits)
    assert await fresh.restore_limits() == 2, "only the last two windows count"
    await _code(fresh, rig, devices[6])
    assert len(rig.sms.sent) == 7


async def test_the_portal_restores_the_limits_when_it_starts(tmp_path: Path) -> None:
    async with SmsRuStandIn.running() as sms:
        cfg = portal_config(tmp_path, sms=sms.sms_config(), login={"codes_per_number": 1})
        async with portal_system(cfg) as system:
            assert isinstance(await system.identification.request_code(PHONE_DEVICE, PHONE, YES, "ru"), CodeSent)
        async with portal_system(cfg) as again:
            assert isinstance(await again.identification.request_code(OTHER_DEVICE, PHONE, YES, "ru"), CodeSent)
        assert len(sms.sent_to(PHONE)) == 1, "the number's limit outlived the restart"


async def test_a_device_asking_for_many_numbers_is_told_to_wait(rig: Rig) -> None:
    service = rig.service(resend_after_s=30, codes_per_device=2, codes_per_ip=50)
    await _code(service, rig, PHONE_DEVICE, PHONE)
    refused = await service.request_code(PHONE_DEVICE, OTHER_PHONE, YES, "ru")
    assert isinstance(refused, Refused) and refused.key == "code.device_limited"
    assert refused.wait_s == pytest.approx(30)
    rig.wait(31)
    await _code(service, rig, PHONE_DEVICE, OTHER_PHONE)
    rig.wait(120)
    assert (await service.request_code(PHONE_DEVICE, "+79160000001", YES, "ru")).key == "code.device_limited"  # type: ignore[union-attr]
    # The same device under a new address is still the same MAC; a new MAC from the same
    # address is limited by the address.
    moved = Device(mac=PHONE_DEVICE.mac, ip="10.99.0.99")
    assert isinstance(await service.request_code(moved, "+79160000002", YES, "ru"), Refused)
    assert len(rig.sms.sent) == 2


# -------------------------------------------------------------------------------- budget ---


async def test_daily_budget_survives_a_restart_and_alerts_the_owner_once(rig: Rig) -> None:
    subscription: Subscription[SmsBudgetReached] = rig.bus.subscribe(SmsBudgetReached)
    service = rig.service(daily_sms_budget=2, resend_after_s=10, codes_per_device=50, codes_per_ip=50)
    phones = [f"+7916000000{i}" for i in range(5)]
    await _code(service, rig, PHONE_DEVICE, phones[0])
    await _code(service, rig, OTHER_DEVICE, phones[1])
    notice = await asyncio.wait_for(subscription.get(), 1)
    assert notice == SmsBudgetReached(day=date(2026, 11, 27), sent=2, budget=2, at_utc=T0)
    rig.wait(11)
    assert await service.request_code(PHONE_DEVICE, phones[2], YES, "ru") == Refused("code.budget")

    restarted = rig.service(daily_sms_budget=2, resend_after_s=10)
    rig.wait(11)
    assert await restarted.request_code(PHONE_DEVICE, phones[3], YES, "ru") == Refused("code.budget")
    assert len(rig.sms.sent) == 2
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(subscription.get(), 0.05)
    # 21:00 UTC is midnight in Moscow: a new store day, a new budget.
    rig.wait(20 * 60)
    await _code(restarted, rig, PHONE_DEVICE, phones[4])
    assert len(rig.sms.sent) == 3


async def test_a_provider_failure_says_so_and_costs_nothing(rig: Rig) -> None:
    service = rig.service()
    rig.sms.failure = SmsError("SMS.ru is temporarily unavailable (code 220); the guest can try again")
    assert await service.request_code(PHONE_DEVICE, PHONE, YES, "ru") == Refused("code.not_sent")
    assert await service.budget.sent_on(date(2026, 11, 27)) == 0
    assert await rig.rows(GuestCodeRequest) == []
    # Nothing was sent, so nothing counts against the number or the device.
    rig.sms.failure = None
    await _code(service, rig)


# ------------------------------------------------------------------------------ vouchers ---


async def test_voucher_login_is_logged_with_the_name_and_ends_with_the_voucher(rig: Rig) -> None:
    service = rig.service()
    assert service.vouchers is not None
    voucher, code = await service.vouchers.issue(
        "Иванов Иван", "passport_rf", "1234", "anna", valid_hours=2, max_devices=1, now_utc=T0
    )
    done = await service.redeem_voucher(PHONE_DEVICE, code.lower(), Consent(True))
    assert isinstance(done, LoggedIn) and done.expires_utc == T0 + timedelta(hours=2)
    view = await service.active(PHONE_DEVICE)
    assert view is not None and view.session.method == "voucher"
    who = view.identity
    assert (who.voucher_id, who.guest_name, who.document_type, who.issued_by) == (
        str(voucher.id),
        "Иванов Иван",
        "passport_rf",
        "anna",
    )
    assert rig.gateway.allowed[PHONE_DEVICE.mac].session_timeout_s == 2 * 3600
    # One device only: a second one is refused.
    assert await service.redeem_voucher(OTHER_DEVICE, code, Consent(True)) == Refused("voucher.wrong")


async def test_voucher_guessing_locks_the_device(rig: Rig) -> None:
    service = rig.service()
    outcomes = [await service.redeem_voucher(PHONE_DEVICE, f"WRONG-{i:05d}", YES) for i in range(6)]
    assert outcomes[:4] == [Refused("voucher.wrong")] * 4
    assert [o.key for o in outcomes[4:]] == ["voucher.limited"] * 2  # type: ignore[union-attr]
    assert outcomes[-1].wait_s == pytest.approx(15 * 60)  # type: ignore[union-attr]
    assert await service.redeem_voucher(PHONE_DEVICE, "", Consent(False)) == Refused("consent.required")


# --------------------------------------------------------------------- remembered devices ---


async def test_a_remembered_device_comes_back_without_a_code(rig: Rig) -> None:
    service = rig.service()
    first = await _login(service, rig)
    rig.wait(4 * 3600 + 60)
    assert await service.active(PHONE_DEVICE) is None
    again = await service.relogin(PHONE_DEVICE, first.remember_token, None)
    assert isinstance(again, LoggedIn) and again.remember_token not in (None, first.remember_token)
    assert len(rig.sms.sent) == 1
    view = await service.active(PHONE_DEVICE)
    assert view is not None and view.session.relogin and view.session.method == "sms"
    assert view.identity.phone_e164 == PHONE
    # The token was replaced; the MAC alone still finds the device (phones' login windows lose cookies).
    assert await service.remembered(PHONE_DEVICE, first.remember_token) is not None
    assert await service.remembered(OTHER_DEVICE, again.remember_token) is None
    assert await service.relogin(OTHER_DEVICE, again.remember_token, None) == Refused("relogin.gone")


async def test_without_a_mac_only_the_cookie_remembers(rig: Rig) -> None:
    rig.gateway.name = "none"
    service = rig.service()
    device = Device(mac="unknown", ip="10.99.0.50")
    done = await _login(service, rig, device)
    neighbour = Device(mac="unknown", ip="10.99.0.51")
    assert await service.remembered(neighbour, None) is None
    assert await service.remembered(device, None) is None
    assert await service.remembered(device, done.remember_token) is not None


async def test_changed_consent_texts_are_asked_again(rig: Rig) -> None:
    service = rig.service()
    first = await _login(service, rig)
    rig.consent_version = "v2#bbbb"
    service = rig.service()
    assert await service.relogin(PHONE_DEVICE, first.remember_token, None) == Refused("consent.required")
    assert await service.relogin(PHONE_DEVICE, first.remember_token, Consent(False)) == Refused("consent.required")
    again = await service.relogin(PHONE_DEVICE, first.remember_token, Consent(True))
    assert isinstance(again, LoggedIn)
    view = await service.active(PHONE_DEVICE)
    assert view is not None and view.session.consent_version == "v2#bbbb"


async def test_remember_days_zero_remembers_nothing(rig: Rig) -> None:
    service = rig.service(remember_days=0)
    done = await _login(service, rig)
    assert done.remember_token is None and await service.remembered(PHONE_DEVICE, None) is None


# ----------------------------------------------------------------------------- sessions ---


async def test_logging_in_again_replaces_the_open_session(rig: Rig) -> None:
    service = rig.service(resend_after_s=10)
    first = await _login(service, rig)
    rig.wait(11)
    second = await _login(service, rig)
    rows = {r.id: r for r in await rig.rows(GuestSession)}
    assert rows[first.session_id].end_reason == "relogin" and rows[second.session_id].stop_utc is None


async def test_logout_and_revoke_close_the_gateway_and_forget_the_device(rig: Rig) -> None:
    service = rig.service()
    first = await _login(service, rig)
    assert await service.logout(PHONE_DEVICE) and not await service.logout(PHONE_DEVICE)
    assert rig.gateway.revoked == [Device(PHONE_DEVICE.mac, PHONE_DEVICE.ip)]
    assert await service.remembered(PHONE_DEVICE, first.remember_token) is None

    second = await service.relogin(PHONE_DEVICE, first.remember_token, None)
    assert second == Refused("relogin.gone")
    rig.wait(61)
    done = await _login(service, rig)
    assert await service.revoke(done.session_id) and not await service.revoke(done.session_id)
    rows = {r.id: r for r in await rig.rows(GuestSession)}
    assert (rows[first.session_id].end_reason, rows[done.session_id].end_reason) == ("logout", "revoked")
    assert await service.remembered(PHONE_DEVICE, None) is None and len(rig.gateway.revoked) == 2


async def test_ending_a_session_keeps_the_traffic_the_gateway_counted_last(rig: Rig) -> None:
    # Between two sweeps the gateway counted more; a revoke makes it forget the counters.
    service = rig.service()
    done = await _login(service, rig)
    rig.gateway.counters = (7_000_000, 250_000)
    assert await service.logout(PHONE_DEVICE)
    [row] = await rig.rows(GuestSession)
    assert (row.id, row.end_reason, row.bytes_in, row.bytes_out) == (done.session_id, "logout", 7_000_000, 250_000)


async def test_a_gateway_that_refuses_leaves_an_honest_log_row(rig: Rig) -> None:
    rig.gateway.refuse = True
    service = rig.service()
    sent = await _code(service, rig)
    assert await service.confirm_code(PHONE_DEVICE, sent.request_id, rig.sms.last_code(), YES) == Refused(
        "login.gateway_failed"
    )
    [row] = await rig.rows(GuestSession)
    assert row.end_reason == "gateway_error" and row.stop_utc == row.start_utc
    assert await service.active(PHONE_DEVICE) is None and await service.remembered(PHONE_DEVICE, None) is None


async def test_sweeper_ends_sessions_on_time_and_when_the_gateway_closed_them(rig: Rig) -> None:
    service = rig.service(session_timeout_min=60, resend_after_s=10)
    sweeper = SessionSweeper(service, ask_gateway=True, clock=lambda: rig.now)
    timed = await _login(service, rig)
    rig.gateway.counters = (5_000_000, 300_000)
    assert await sweeper.sweep() == 0
    rig.wait(3600)
    assert await sweeper.sweep() == 1
    rows = {r.id: r for r in await rig.rows(GuestSession)}
    ended = rows[timed.session_id]
    assert (ended.end_reason, ended.stop_utc) == ("session_timeout", T0 + timedelta(hours=1))
    assert (ended.bytes_in, ended.bytes_out) == (5_000_000, 300_000)
    # A timeout is no logout: the device may come back without a code.
    assert await service.remembered(PHONE_DEVICE, None) is not None

    idle = await _login(service, rig, OTHER_DEVICE)
    rig.gateway.authorised = False
    assert await sweeper.sweep() == 1
    rows = {r.id: r for r in await rig.rows(GuestSession)}
    assert rows[idle.session_id].end_reason == "gateway"


async def test_purge_keeps_six_months_then_deletes_the_person_too(rig: Rig) -> None:
    service = rig.service(resend_after_s=10)
    await _login(service, rig)
    assert await service.logout(PHONE_DEVICE)
    assert service.vouchers is not None
    await service.vouchers.issue("Иванова Мария", "passport_rf", "1234", "anna", 1, 1, now_utc=rig.now)
    purge = Purge(service.guests, service.codes, service.budget, 183, clock=lambda: rig.now, vouchers=service.vouchers)
    rig.wait(2 * 24 * 3600)
    assert await purge.purge() == (0, 0)
    assert await rig.rows(GuestCodeRequest) == []  # code requests go after a day
    rig.wait(181 * 24 * 3600)
    recent = await _login(service, rig, OTHER_DEVICE, OTHER_PHONE)
    assert await purge.purge() == (0, 0)  # exactly 183 days: still kept
    assert len(await rig.rows(VoucherRow)) == 1
    rig.wait(24 * 3600)
    assert await purge.purge() == (1, 1)
    assert [r.id for r in await rig.rows(GuestSession)] == [recent.session_id]
    assert await rig.rows(VoucherRow) == [], "the voucher's name and document go with the log"
