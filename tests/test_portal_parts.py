"""The portal's small parts on their own: the `[portal.login]` settings, phone numbers, the code key
and hashes, consent versions, visits, and which addresses count as the portal's own."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from appliance.config import ConfigError, parse_config
from appliance.evidence.keys import KeyFileError
from appliance.portal.active_cache import CACHE_S, ActiveDevices, device_key
from appliance.portal.codes import CodeHasher, load_or_create_code_key, new_code
from appliance.portal.consent import consent_texts
from appliance.portal.gateways.base import Device
from appliance.portal.hosts import PortalAddress, addressed_to_us, destination, portal_base
from appliance.portal.phones import PhoneRefused, masked, parse_phone
from appliance.portal.visits import VisitStore
from appliance.storage.guests import Identity, SessionView
from appliance.storage.models_guests import GuestSession

# ---------------------------------------------------------------------------- settings ---


def login_problems(**login: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"portal": {"login": login}})
    return info.value.problems


def test_login_defaults_follow_the_law_and_the_issue() -> None:
    login = parse_config({}).portal.login
    assert (login.code_length, login.code_ttl_s, login.code_attempts) == (6, 300, 5)
    assert login.log_retention_days == 183 and login.allowed_country_codes == [7]
    assert login.methods == ["sms", "voucher"] and login.remember_days == 30


def test_retention_below_six_months_is_refused_with_the_reason() -> None:
    assert login_problems(log_retention_days=90) == [
        "portal.login.log_retention_days: the identification log must be kept at least six months (Decree 758); "
        "set 183 or more (got 90)"
    ]


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ({"code_attempts": 6}, "portal.login.code_attempts: Input should be less than or equal to 5 (got 6)"),
        ({"methods": []}, "portal.login.methods: List should have at least 1 item after validation, not 0"),
        ({"methods": ["sms", "sms"]}, "a method is listed twice"),
        ({"methods": ["email"]}, "portal.login.methods[0]: Input should be 'sms', 'call', 'voucher' or 'external'"),
        ({"public_url": "http://wifi.example"}, "write the portal's address as https://name.example"),
        ({"idle_timeout_min": 300, "session_timeout_min": 60}, "idle_timeout_min (300) is longer"),
        ({"allowed_country_codes": [0]}, "country calling codes are 1 to 999"),
        ({"consent_version": "v 1"}, "portal.login.consent_version"),
        ({"codes_per_number": 0}, "portal.login.codes_per_number"),
        ({"wifi_name": "Гостевая сеть магазина"}, "at most 32 bytes (got 42; a Cyrillic letter takes 2)"),
    ],
)
def test_bad_login_settings_name_the_key(login: dict[str, Any], expected: str) -> None:
    [problem] = login_problems(**login)
    assert expected in problem


# ------------------------------------------------------------------------------ phones ---


@pytest.mark.parametrize("typed", ["+7 916 123-45-67", "8 (916) 123 45 67", "9161234567", " +79161234567 "])
def test_russian_mobile_numbers_in_any_usual_writing(typed: str) -> None:
    phone = parse_phone(typed, [7])
    assert (phone.e164, phone.shown) == ("+79161234567", "+7 916 123-45-67")


def test_other_countries_when_allowed() -> None:
    assert parse_phone("+375 29 123-45-67", [7, 375]).e164 == "+375291234567"
    with pytest.raises(PhoneRefused) as refused:
        parse_phone("+375 29 123-45-67", [7])
    assert refused.value.key == "phone.country"


def test_masked_numbers_keep_the_operator_and_the_last_digits() -> None:
    assert masked("+79161234567") == "+7 916 ***-**-67"
    assert masked("+375291234567") == "+375 29 1**-**-67"


# ------------------------------------------------------------------------------- codes ---


def test_codes_are_digits_of_the_set_length_and_spread_out() -> None:
    codes = [new_code(6) for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) > 1990 and {c[0] for c in codes} == set("0123456789")


def test_a_digest_depends_on_the_key_and_the_request() -> None:
    one, other = CodeHasher(b"a" * 32), CodeHasher(b"b" * 32)
    digest = one.digest("req1", "123456")
    assert one.matches("req1", "123456", digest)
    assert not one.matches("req1", "123457", digest) and not one.matches("req2", "123456", digest)
    assert not other.matches("req1", "123456", digest)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CodeHasher(b"short")


def test_code_key_is_made_once_owner_only(tmp_path: Path) -> None:
    key = load_or_create_code_key(tmp_path)
    path = tmp_path / "keys" / "portal-codes.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_or_create_code_key(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="one-time codes stored in the database could be recovered"):
        load_or_create_code_key(tmp_path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="damaged"):
        load_or_create_code_key(tmp_path)


# ----------------------------------------------------------------------------- consent ---


def test_the_recorded_version_changes_with_the_texts_shown() -> None:
    base = consent_texts("ООО «Ромашка»", "Москва, ул. Ленина, 1", "Магазин", 183, "2025-09-01")
    assert base.recorded_version.startswith("2025-09-01#") and len(base.recorded_version) == 19
    assert "ООО «Ромашка»" in base.personal_data("ru")[0] and "183 days" in base.personal_data("en")[2]
    same = consent_texts("ООО «Ромашка»", "Москва, ул. Ленина, 1", "Другой магазин", 183, "2025-09-01")
    renamed = consent_texts("ООО «Лютик»", "Москва, ул. Ленина, 1", "Магазин", 183, "2025-09-01")
    longer = consent_texts("ООО «Ромашка»", "Москва, ул. Ленина, 1", "Магазин", 365, "2025-09-01")
    assert same.recorded_version == base.recorded_version
    assert len({base.recorded_version, renamed.recorded_version, longer.recorded_version}) == 3
    # Without an operator, the store is named.
    assert "Магазин" in consent_texts("", "", "Магазин", 183, "v1").promotions("ru")[0]


# ------------------------------------------------------------------------------ visits ---


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_visits_are_found_by_their_cookie_only_and_expire() -> None:
    ticks = Ticks()
    visits = VisitStore(ttl_s=60, max_visits=3, clock=ticks)
    device = Device("aa:bb:cc:00:00:01", "10.0.0.2")
    visit_id, visit = visits.start(device, "http://example.ru/")
    assert visits.get(visit_id) is visit and visits.get("forged") is None and visits.get(None) is None
    ticks.now = 59
    assert visits.get(visit_id) is visit
    ticks.now = 120
    assert visits.get(visit_id) is None


def test_renewed_visits_get_a_new_id_and_token() -> None:
    visits = VisitStore()
    device = Device("aa:bb:cc:00:00:01", "10.0.0.2")
    old_id, old = visits.start(device, "http://example.ru/")
    new_id, new = visits.renew(old_id, old)
    assert visits.get(old_id) is None and visits.get(new_id) is new
    assert new.csrf_token != old.csrf_token and (new.device, new.dst) == (device, "http://example.ru/")


def test_a_flood_of_visits_keeps_memory_bounded() -> None:
    visits = VisitStore(max_visits=100)
    ids = [visits.start(Device("unknown", f"10.0.{i // 250}.{i % 250}"))[0] for i in range(1000)]
    assert len(visits) == 100 and visits.get(ids[0]) is None and visits.get(ids[-1]) is not None


# ------------------------------------------------------------------------------- hosts ---


ADDRESS = PortalAddress("0.0.0.0", "")


class _Transport:
    def __init__(self, sockname: tuple[str, int]) -> None:
        self.sockname = sockname

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return False


def request(path: str, host: str | None, sockname: tuple[str, int] = ("10.99.0.1", 8081)) -> Any:
    headers = {"Host": host} if host else {}
    return make_mocked_request("GET", path, headers=headers, transport=_Transport(sockname))


@pytest.mark.parametrize(
    ("host", "ours"),
    [("10.99.0.1:8081", True), ("10.99.0.1", True), (None, True), ("captive.apple.com", False), ("evil", False)],
)
def test_own_requests_are_those_for_the_address_they_reached(host: str | None, ours: bool) -> None:
    assert addressed_to_us(request("/", host), ADDRESS) is ours


def test_portal_base_is_the_address_reached_or_the_public_name() -> None:
    assert portal_base(request("/", "x"), ADDRESS) == "http://10.99.0.1:8081"
    assert portal_base(request("/", "x", ("10.99.0.1", 80)), ADDRESS) == "http://10.99.0.1"
    assert portal_base(request("/", "x", ("fd00::1", 8081)), ADDRESS) == "http://[fd00::1]:8081"
    public = PortalAddress("0.0.0.0", "https://wifi.shop.example")
    assert portal_base(request("/", "x"), public) == "https://wifi.shop.example"
    assert addressed_to_us(request("/", "wifi.shop.example"), public)


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("dst=http://example.ru/a?b=1", "http://example.ru/a?b=1"),
        ("redirect=https://evil.example/", "https://evil.example/"),
        ("dst=javascript:alert(1)", None),
        ("dst=//evil.example/", None),
        ("dst=https://user:pw@evil.example/", None),
        ("dst=http://10.99.0.1:8081/welcome", None),
        ("dst=http://example.ru:0/", None),
        ("dst=http://example.ru/%0d%0aSet-Cookie:x", None),
        ("dst=http://exa mple.ru/", None),
        ("dst=http://[::1/", None),
        ("dst=" + "http://e.ru/" + "a" * 3000, None),
        ("other=http://example.ru/", None),
    ],
)
def test_only_other_sites_over_http_are_kept_as_destinations(query: str, kept: str | None) -> None:
    assert destination(request(f"/?{query}", "10.99.0.1:8081"), ADDRESS) == kept


# -------------------------------------------------------------------- signed-in devices ---


def _view(expires: datetime) -> SessionView:
    row = GuestSession(id="s" * 32, mac="aa:bb:cc:00:00:01", ip="10.0.0.2", expires_utc=expires)
    return SessionView(row, Identity(1, "+79161234567", None, None, None, None))


def test_signed_in_devices_are_remembered_briefly_and_never_past_their_end() -> None:
    ticks = Ticks()
    cache = ActiveDevices(ticks)
    now = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    key = device_key("aa:bb:cc:00:00:01", "10.0.0.2")
    assert key == ("aa:bb:cc:00:00:01",) and device_key("unknown", "10.0.0.2") == ("unknown", "10.0.0.2")
    assert cache.get(key, now) == (False, None)
    view = _view(now + timedelta(minutes=1))
    cache.put(key, view, cache.changes)
    assert cache.get(key, now) == (True, view)
    assert cache.get(key, now + timedelta(minutes=1)) == (False, None)  # the session is over
    ticks.now = CACHE_S
    assert cache.get(key, now) == (False, None)
    cache.put(key, None, cache.changes)
    assert cache.get(key, now) == (True, None)


def test_an_answer_read_while_a_session_changed_is_not_kept() -> None:
    cache = ActiveDevices(Ticks())
    now = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    key = device_key("aa:bb:cc:00:00:01", "10.0.0.2")
    before = cache.changes
    cache.forget(key)  # a login committed while the database was being asked
    cache.put(key, None, before)
    assert cache.get(key, now) == (False, None)


# ------------------------------------------------------------------------ accessibility ---

PORTAL_CSS = Path(__file__).resolve().parent.parent / "appliance" / "portal" / "static" / "portal.css"


def _declared(css: str, selector: str, prop: str) -> str:
    """The value of `prop` in the rule whose selector list names `selector` (the stylesheet's own)."""
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        if selector in (s.strip() for s in selectors.split(",")):
            found = re.search(rf"(?:^|[;\s]){prop}\s*:\s*(#[0-9a-fA-F]{{3,6}})", body)
            if found:
                return found.group(1)
    raise AssertionError(f"{selector} declares no {prop} colour")


def _luminance(hex_colour: str) -> float:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(
    ("text", "background"),
    [
        ("body", "body"),  # page text
        ("header", "header"),  # store name and language switch
        (".hint", "body"),  # hints, on the page and on a card
        (".hint", ".card"),
        ("main a", ".card"),  # links and link-styled buttons
        ("main a", "body"),
        ("button.link", ".card"),
        ("button", "button"),
        (".error-box", ".error-box"),
        ("body", ".notice"),  # notices keep the page's text colour
        ("body", ".ok"),
    ],
)
def test_portal_text_meets_wcag_aa_contrast(text: str, background: str) -> None:
    css = PORTAL_CSS.read_text()
    fg, bg = _declared(css, text, "color"), _declared(css, background, "background")
    assert _contrast(fg, bg) >= 4.5, f"{text} {fg} on {background} {bg}: {_contrast(fg, bg):.2f}:1"
