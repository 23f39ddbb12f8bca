"""The identification service (Decree 758): a guest proves a phone number with a one-time code,
redeems a voucher staff issued after checking an ID, is identified by an identity provider (a
licensed service, an ESIA partner), or comes back on a remembered device; then the gateway lets
the device through and the login is logged.

What it guarantees, whatever the web layer does:
- the device is the one the gateway reported when the login started (never browser input), and a
  code works only for the device it was sent for;
- a code lives `code_ttl_s`, allows `code_attempts` tries (spent in the database before the
  comparison, so parallel guesses cannot exceed them) and is compared in constant time;
- any number gets the same answer while it is well-formed: a number over its limit gets a code
  page too, for a code that is never sent (nothing tells whether a number is known or busy);
- codes per number, device (MAC) and IP are capped with a doubling pause between them, and the
  day's codes are capped by a budget kept in the database; reaching it alerts the owner once. The
  three limits are counted in memory (every probe-like request asks them) and rebuilt at start
  from the code requests in the database (`restore_limits`), so a restart gives no fresh allowance;
- the consent version shown is recorded with every session.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from appliance.bus import EventBus
from appliance.portal.active_cache import ActiveDevices, device_key
from appliance.portal.codes import CodeHasher, new_code, new_id, token_digest
from appliance.portal.gateways.base import Device, Gateway, GatewayError, Grant
from appliance.portal.identity_provider import IdentityProvider, IdentityRefused
from appliance.portal.notices import SmsBudgetReached
from appliance.portal.phones import Phone, parse_phone
from appliance.portal.settings import LoginMethod, LoginSettings
from appliance.portal.sms.base import SmsError, SmsSender
from appliance.portal.sms.callcheck import CallChecker, CallStatus
from appliance.portal.vouchers import VoucherStore
from appliance.storage.guest_codes import Attempt, CodeStore, NewCode, SmsBudget
from appliance.storage.guests import DeviceKey, GuestStore, NewSession, Remembered, SessionView
from appliance.storage.models_guests import (
    CODE_CONFIRMED,
    CODE_LOCKED,
    END_GATEWAY_ERROR,
    END_LOGOUT,
    END_REVOKED,
    GuestCodeRequest,
)
from appliance.web.i18n import Lang, Text
from appliance.web.ratelimit import Limit, RateLimiter

log = logging.getLogger(__name__)

CODE_PATTERN_LENGTHS: Final = range(4, 9)
"""Digits a typed code may have (the bounds of `code_length`): anything else is a typo, not a try."""
VOUCHER_MAX_LENGTH: Final = 64
# Wrong vouchers per device: a person mistypes a few times, a guesser is slowed to a crawl.
VOUCHER_LIMIT: Final = Limit(max_hits=5, window_s=15 * 60, lockout_s=15 * 60)
REMEMBER_TOKEN_BYTES: Final = 32
EXTERNAL_STATE_BYTES: Final = 24

SMS_TEXT: Final = Text("Код для Wi-Fi: {code}. Никому не сообщайте.", "Wi-Fi code: {code}. Do not share it.")


@dataclass(frozen=True)
class Consent:
    personal_data: bool
    promotions: bool = False


# --------------------------------------------------------------------------------- outcomes ---


@dataclass(frozen=True)
class Refused:
    """Nothing was done; `key` names the message that says why and what to do."""

    key: str
    wait_s: float | None = None


@dataclass(frozen=True)
class CodeSent:
    request_id: str
    phone: Phone
    method: LoginMethod
    expires_utc: datetime
    next_code_in_s: float | None
    """When another code may be asked for (None: at once)."""
    call_number: str | None = None
    """Method "call": the number the guest calls from their phone (instead of typing a code)."""


@dataclass(frozen=True)
class WrongCode:
    attempts_left: int


@dataclass(frozen=True)
class LoggedIn:
    session_id: str
    expires_utc: datetime
    finish_url: str | None
    """Where the browser must go for the gateway to open access (openNDS), if anywhere."""
    remember_token: str | None
    """For the remember cookie; None when devices are not remembered."""


@dataclass(frozen=True)
class ExternalStart:
    state: str
    """Bound to the visit: the provider's answer must carry it back."""
    url: str
    """The provider's page the browser goes to."""


CodeOutcome = CodeSent | Refused
ConfirmOutcome = LoggedIn | WrongCode | Refused


def _device_key(device: Device) -> DeviceKey:
    return DeviceKey(device.mac, device.ip)


class _LimitClock:
    """The limiters' clock: the monotonic one, or a past moment while their hits are replayed."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self.replaying: float | None = None

    def __call__(self) -> float:
        return self._monotonic() if self.replaying is None else self.replaying


def _limit(max_hits: int, settings: LoginSettings) -> Limit:
    window = settings.limit_window_min * 60.0
    return Limit(max_hits=max_hits, window_s=window, lockout_s=window, backoff_s=float(settings.resend_after_s))


class IdentificationService:
    def __init__(
        self,
        settings: LoginSettings,
        *,
        codes: CodeStore,
        budget: SmsBudget,
        guests: GuestStore,
        gateway: Gateway,
        hasher: CodeHasher,
        bus: EventBus,
        tz: ZoneInfo,
        consent_version: str,
        sms: SmsSender | None = None,
        vouchers: VoucherStore | None = None,
        external: IdentityProvider | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.codes = codes
        self.budget = budget
        self.guests = guests
        self.gateway = gateway
        self.hasher = hasher
        self.bus = bus
        self.tz = tz
        self.consent_version = consent_version
        self.sms = sms
        self.vouchers = vouchers
        self.external = external
        self.clock = clock
        self._limit_clock = _LimitClock(monotonic)
        self.by_number = RateLimiter(_limit(settings.codes_per_number, settings), clock=self._limit_clock)
        self.by_mac = RateLimiter(_limit(settings.codes_per_device, settings), clock=self._limit_clock)
        self.by_ip = RateLimiter(_limit(settings.codes_per_ip, settings), clock=self._limit_clock)
        self.voucher_tries = RateLimiter(VOUCHER_LIMIT, clock=monotonic)
        self._active = ActiveDevices(monotonic)
        self._call_number: str | None = None
        """The number the provider last asked a guest to call (the decoy of a number over its limit shows it)."""

    @property
    def methods(self) -> tuple[LoginMethod, ...]:
        """The configured methods that can work: codes need a provider (calls one that can call)."""
        usable = {
            "sms": self.sms is not None,
            "call": isinstance(self.sms, CallChecker),
            "voucher": self.vouchers is not None,
            "external": self.external is not None,
        }
        return tuple(m for m in self.settings.methods if usable[m])

    # ------------------------------------------------------------------------------ codes ---

    @property
    def limits_lookback(self) -> timedelta:
        """How far back code requests decide the limits: a number locked by a request one window
        ago stays locked a window more, and the requests before that one counted towards it."""
        return timedelta(minutes=2 * self.settings.limit_window_min)

    async def restore_limits(self) -> int:
        """Replay the code requests of the lookback into the limits, as they happened: the same
        hits count (a request of a number over its limit hit the device's limits only), the same
        locks follow. Near the lookback's start, where the history before is cut off, an unsent
        request may count as a sent one: the limits err on the strict side. Returns how many
        requests were replayed."""
        now, mono = self.clock(), self._limit_clock()
        past = await self.codes.requested_since(now - self.limits_lookback)
        try:
            for request in past:
                self._limit_clock.replaying = mono - max(0.0, (now - request.created_utc).total_seconds())
                device = Device(mac=request.mac, ip=request.ip)
                for limiter, key in self._device_limit_keys(device):
                    limiter.hit(key)
                # Already waiting (a decoy's request): not counted, as when it was made.
                self.by_number.hit(request.phone_e164)
        finally:
            self._limit_clock.replaying = None
        if past:
            log.info("guest code limits restored", extra={"requests": len(past)})
        return len(past)

    async def request_code(
        self,
        device: Device,
        phone_raw: str,
        consent: Consent,
        lang: Lang,
        *,
        method: LoginMethod = "sms",
        replaces: str | None = None,
    ) -> CodeOutcome:
        if method not in ("sms", "call") or method not in self.methods or self.sms is None:
            return Refused("login.method_unavailable")
        if not consent.personal_data:
            return Refused("consent.required")
        try:
            phone = parse_phone(phone_raw, self.settings.allowed_country_codes)
        except ValueError as exc:
            return Refused(str(exc))
        device_keys = self._device_limit_keys(device)
        waits = [w for limiter, key in device_keys if (w := limiter.retry_after(key)) is not None]
        if waits:
            return Refused("code.device_limited", max(waits))
        now = self.clock()
        if self.by_number.retry_after(phone.e164) is not None:
            # Over its limit: the same answer as for any number, for a code that is never sent.
            for limiter, key in device_keys:
                limiter.hit(key)
            return await self._decoy(device, phone, method, now, replaces)

        day = now.astimezone(self.tz).date()
        reservation = await self.budget.reserve(day, self.settings.daily_sms_budget)
        if reservation.sent >= self.settings.daily_sms_budget:
            await self._budget_reached(day, reservation.sent, now)
        if not reservation.granted:
            return Refused("code.budget")
        request_id = new_id()
        code = new_code(self.settings.code_length)
        await self.codes.create(self._new_code(request_id, code, phone, method, device, now))
        call_number: str | None = None
        provider_id: str | None = None
        try:
            if method == "call":
                assert isinstance(self.sms, CallChecker)
                check = await self.sms.call_check(phone.e164)
                provider_id, call_number = check.check_id, check.call_number
            else:
                provider_id = (await self.sms.send(phone.e164, SMS_TEXT.get(lang).format(code=code))).provider_id
        except SmsError as exc:
            await self.codes.discard(request_id)
            await self.budget.release(day)
            log.warning(
                "guest code not sent",
                extra={"provider": self.sms.name, "error": str(exc), "permanent": exc.permanent, "method": method},
            )
            return Refused("code.not_sent")
        await self.codes.sent(request_id, provider_id, supersedes=replaces)
        if call_number is not None:
            self._call_number = call_number
        for limiter, key in [*device_keys, (self.by_number, phone.e164)]:
            limiter.hit(key)
        return self._sent(request_id, phone, method, device, now, call_number)

    async def _decoy(
        self, device: Device, phone: Phone, method: LoginMethod, now: datetime, replaces: str | None
    ) -> CodeOutcome:
        if method == "call" and self._call_number is None:
            # No provider number to show yet: the answer of a provider failure, which any number can get.
            return Refused("code.not_sent")
        request_id = new_id()
        # A code nobody is told: the request then behaves like any other (tries, expiry, lockout).
        unsent = new_code(self.settings.code_length)
        await self.codes.create(self._new_code(request_id, unsent, phone, method, device, now), supersedes=replaces)
        return self._sent(request_id, phone, method, device, now, self._call_number if method == "call" else None)

    def _sent(
        self, request_id: str, phone: Phone, method: LoginMethod, device: Device, now: datetime, call: str | None
    ) -> CodeSent:
        expires = now + timedelta(seconds=self.settings.code_ttl_s)
        return CodeSent(request_id, phone, method, expires, self.next_code_in(phone.e164, device), call)

    def _new_code(
        self, request_id: str, code: str, phone: Phone, method: LoginMethod, device: Device, now: datetime
    ) -> NewCode:
        return NewCode(
            request_id=request_id,
            phone_e164=phone.e164,
            method=method,
            code_digest=self.hasher.digest(request_id, code),
            mac=device.mac,
            ip=device.ip,
            created_utc=now,
            ttl=timedelta(seconds=self.settings.code_ttl_s),
            attempts=self.settings.code_attempts,
        )

    def _device_limit_keys(self, device: Device) -> list[tuple[RateLimiter, str]]:
        keys = [(self.by_ip, device.ip)]
        if device.mac != "unknown":
            keys.append((self.by_mac, device.mac))
        return keys

    def next_code_in(self, phone_e164: str, device: Device) -> float | None:
        """Seconds until this device may ask for another code for this number (None: now)."""
        keys = [*self._device_limit_keys(device), (self.by_number, phone_e164)]
        waits = [w for limiter, key in keys if (w := limiter.retry_after(key)) is not None]
        return max(waits) if waits else None

    async def _budget_reached(self, day: date, sent: int, now: datetime) -> None:
        if await self.budget.mark_alerted(day, now):
            log.warning("daily SMS budget reached", extra={"day": day.isoformat(), "sent": sent})
            self.bus.publish(SmsBudgetReached(day=day, sent=sent, budget=self.settings.daily_sms_budget, at_utc=now))

    async def confirm_code(self, device: Device, request_id: str, code: str, consent: Consent) -> ConfirmOutcome:
        code = code.strip()
        if not code.isascii() or not code.isdigit() or len(code) not in CODE_PATTERN_LENGTHS:
            return Refused("code.format")
        attempt = await self.codes.spend_attempt(
            request_id,
            self.clock(),
            confirm_if=lambda r: self._for_device(r, device, "sms") and self.hasher.matches(r.id, code, r.code_digest),
        )
        row = attempt.request
        refused = self._unusable(attempt, device, "sms")
        if refused is not None or row is None:
            return refused or Refused("code.expired")
        if attempt.confirmed:
            guest_id = await self.guests.guest_for_phone(row.phone_e164, self.clock())
            return await self._admit(
                device, guest_id, "sms", promotions=consent.promotions, provider_id=row.provider_id
            )
        if row.attempts_left == 0:
            await self.codes.lock(row.id)
            return Refused("code.locked")
        return WrongCode(row.attempts_left)

    async def confirm_call(self, device: Device, request_id: str, consent: Consent) -> ConfirmOutcome:
        """Ask the provider whether the guest has called; each asking spends one try."""
        attempt = await self.codes.spend_attempt(request_id, self.clock())
        row = attempt.request
        refused = self._unusable(attempt, device, "call")
        if refused is not None or row is None:
            return refused or Refused("code.expired")
        assert isinstance(self.sms, CallChecker)
        if row.provider_id is None:
            # A decoy: nobody will ever confirm it.
            status = CallStatus.PENDING
        else:
            try:
                status = await self.sms.check_status(row.provider_id)
            except SmsError as exc:
                log.warning("call check status unknown", extra={"provider": self.sms.name, "error": str(exc)})
                return Refused("call.check_failed")
        if status is CallStatus.CONFIRMED:
            if not await self.codes.confirm(row.id):
                return Refused("code.expired")
            guest_id = await self.guests.guest_for_phone(row.phone_e164, self.clock())
            return await self._admit(
                device, guest_id, "call", promotions=consent.promotions, provider_id=row.provider_id
            )
        if status is CallStatus.EXPIRED:
            await self.codes.lock(row.id)
            return Refused("code.expired")
        if row.attempts_left == 0:
            await self.codes.lock(row.id)
            return Refused("code.locked")
        return WrongCode(row.attempts_left)

    @staticmethod
    def _for_device(row: GuestCodeRequest, device: Device, method: LoginMethod) -> bool:
        """Whether the request was made by this device for this method (a code works only there)."""
        return (row.mac, row.ip) == (device.mac, device.ip) and row.method == method

    def _unusable(self, attempt: Attempt, device: Device, method: LoginMethod) -> Refused | None:
        """Why a try could not be spent on this request from this device, if it could not."""
        row = attempt.request
        if row is None or not self._for_device(row, device, method):
            return Refused("code.expired")
        if not attempt.spent:
            locked = row.status == CODE_LOCKED or (row.attempts_left == 0 and row.status != CODE_CONFIRMED)
            return Refused("code.locked" if locked else "code.expired")
        return None

    # --------------------------------------------------------------------------- vouchers ---

    async def redeem_voucher(self, device: Device, code: str, consent: Consent) -> LoggedIn | Refused:
        if "voucher" not in self.methods or self.vouchers is None:
            return Refused("login.method_unavailable")
        if not consent.personal_data:
            return Refused("consent.required")
        key = f"{device.mac}|{device.ip}"
        wait = self.voucher_tries.retry_after(key)
        if wait is not None:
            return Refused("voucher.limited", wait)
        code = code.strip()
        identity = None
        if 0 < len(code) <= VOUCHER_MAX_LENGTH:
            identity = await self.vouchers.redeem(code, self.clock(), device_mac=device.mac)
        if identity is None:
            wait = self.voucher_tries.hit(key)
            return Refused("voucher.limited", wait) if wait is not None else Refused("voucher.wrong")
        self.voucher_tries.reset(key)
        guest_id = await self.guests.guest_for_voucher(
            str(identity.voucher_id), identity.guest_name, identity.document_type, identity.issued_by, self.clock()
        )
        return await self._admit(device, guest_id, "voucher", promotions=consent.promotions, until=identity.valid_until)

    # ----------------------------------------------------------------- identity provider ---

    def start_external(self, consent: Consent, return_url: str, lang: Lang) -> ExternalStart | Refused:
        """Where to send the guest to be identified by the provider (consent is asked first: the
        provider hands this box personal data)."""
        if "external" not in self.methods or self.external is None:
            return Refused("login.method_unavailable")
        if not consent.personal_data:
            return Refused("consent.required")
        state = secrets.token_urlsafe(EXTERNAL_STATE_BYTES)
        return ExternalStart(state, self.external.start_url(state, return_url, lang))

    async def finish_external(
        self, device: Device, params: Mapping[str, str], state: str, consent: Consent
    ) -> LoggedIn | Refused:
        """The provider's answer: checked by the driver, then the guest is admitted as the phone
        number it confirmed, with its reference in the log."""
        if self.external is None:
            return Refused("login.method_unavailable")
        try:
            who = self.external.verify(params, state)
        except IdentityRefused as exc:
            log.warning("identity provider's answer refused", extra={"provider": self.external.name, "error": str(exc)})
            return Refused("external.refused")
        guest_id = await self.guests.guest_for_phone(who.phone_e164, self.clock())
        return await self._admit(device, guest_id, "external", promotions=consent.promotions, provider_id=who.reference)

    # ------------------------------------------------------------------ remembered devices ---

    async def remembered(self, device: Device, token: str | None) -> Remembered | None:
        if self.settings.remember_days == 0:
            return None
        return await self.guests.remembered(token_digest(token) if token else None, device.mac, self.clock())

    def consent_current(self, remembered: Remembered) -> bool:
        """Whether the consent the guest gave last is the one shown now (else it is asked again)."""
        return remembered.row.consent_version == self.consent_version

    async def relogin(self, device: Device, token: str | None, consent: Consent | None) -> LoggedIn | Refused:
        """Admit a remembered device without a code. `consent` is needed when the texts changed
        since the guest last agreed (None: the earlier consent, and promotions answer, stand)."""
        found = await self.remembered(device, token)
        if found is None:
            return Refused("relogin.gone")
        if consent is None and not self.consent_current(found):
            return Refused("consent.required")
        if consent is not None and not consent.personal_data:
            return Refused("consent.required")
        await self.guests.forget(found.row.id)
        return await self._admit(
            device,
            found.identity.guest_id,
            found.row.method,
            promotions=None if consent is None else consent.promotions,
            relogin=True,
        )

    # ------------------------------------------------------------------------------ admit ---

    async def _admit(
        self,
        device: Device,
        guest_id: int,
        method: str,
        *,
        promotions: bool | None,
        provider_id: str | None = None,
        relogin: bool = False,
        until: datetime | None = None,
    ) -> LoggedIn | Refused:
        """Open a session and the gateway; `promotions` None keeps the guest's earlier answer;
        `until` ends the session early (a voucher's end)."""
        now = self.clock()
        answered = promotions is not None
        if promotions is None:
            promotions = await self.guests.promotions_consent(guest_id)
        session_id = new_id()
        expires = now + timedelta(seconds=self.settings.session_timeout_s)
        if until is not None and until < expires:
            expires = max(until, now)
        await self.guests.start_session(
            NewSession(
                session_id=session_id,
                guest_id=guest_id,
                method=method,
                relogin=relogin,
                device=_device_key(device),
                gateway=self.gateway.name,
                gateway_ref=device.gateway_ref,
                provider_id=provider_id,
                consent_version=self.consent_version,
                promotions_consent=promotions,
                start_utc=now,
                expires_utc=expires,
            ),
            promotions_answered=answered,
        )
        self._active.forget(device_key(device.mac, device.ip))
        timeout_s = max(1, int((expires - now).total_seconds()))
        grant = Grant(
            session_id=session_id,
            session_timeout_s=timeout_s,
            idle_timeout_s=min(self.settings.idle_timeout_s, timeout_s),
        )
        try:
            finish_url = await self.gateway.allow(device, grant)
        except GatewayError as exc:
            await self.guests.end_session(session_id, END_GATEWAY_ERROR, self.clock())
            log.error("the gateway did not let a guest through", extra={"session": session_id, "error": str(exc)})
            return Refused("login.gateway_failed")
        token = None
        if self.settings.remember_days > 0:
            token = secrets.token_urlsafe(REMEMBER_TOKEN_BYTES)
            await self.guests.remember(
                guest_id,
                device.mac,
                token_digest(token),
                method,
                self.consent_version,
                now,
                now + timedelta(days=self.settings.remember_days),
            )
        log.info(
            "guest login",
            extra={"session": session_id, "method": method, "relogin": relogin, "gateway": self.gateway.name},
        )
        return LoggedIn(session_id, expires, finish_url, token)

    # ----------------------------------------------------------------------------- status ---

    async def active(self, device: Device) -> SessionView | None:
        key, now = device_key(device.mac, device.ip), self.clock()
        known, view = self._active.get(key, now)
        if not known:
            changes = self._active.changes
            view = await self.guests.active_session(_device_key(device), now)
            self._active.put(key, view, changes)
        return view

    async def logout(self, device: Device) -> bool:
        """End the device's session at the guest's request; the device is forgotten too."""
        view = await self.active(device)
        if view is None:
            return False
        await self.end(view, END_LOGOUT, forget=True)
        return True

    async def revoke(self, session_id: str) -> bool:
        """Staff ended the session: access closes and the device must identify again."""
        view = await self.guests.session(session_id)
        if view is None or view.session.stop_utc is not None:
            return False
        await self.end(view, END_REVOKED, forget=True)
        return True

    async def end(self, view: SessionView, reason: str, *, at: datetime | None = None, forget: bool = False) -> None:
        """End a session (at `at`, default now) and close it at the gateway; `forget`: the device
        must identify again next time (logout, revoke), not merely log in again (timeouts)."""
        row = view.session
        ended = await self.guests.end_session(row.id, reason, at or self.clock())
        self._active.forget(device_key(row.mac, row.ip))
        if ended is None:
            return
        if forget:
            await self.guests.forget_device(row.mac, row.ip, view.identity.guest_id)
        device = Device(mac=row.mac, ip=row.ip, gateway_ref=row.gateway_ref)
        await self._last_usage(row.id, device)
        try:
            await self.gateway.revoke(device)
        except GatewayError as exc:
            log.error("the gateway did not close a guest's access", extra={"session": row.id, "error": str(exc)})
        log.info("guest session ended", extra={"session": row.id, "reason": reason})

    async def _last_usage(self, session_id: str, device: Device) -> None:
        """The traffic since the sweeper last asked, read before a revoke makes the gateway forget it."""
        try:
            status = await self.gateway.status(device)
        except GatewayError as exc:
            log.warning(
                "the gateway did not report a guest's traffic", extra={"session": session_id, "error": str(exc)}
            )
            return
        await self.guests.record_usage(session_id, status.bytes_in, status.bytes_out)
