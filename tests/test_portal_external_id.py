"""The identity provider plug-in (method "external"): a guest is sent to a licensed
identification service and comes back identified. The service is a local stand-in speaking the
signed-redirect contract (appliance/portal/identity_provider.py); the portal, its driver and the
database are the real ones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from appliance.config import ConfigError, parse_config
from appliance.logs import SECRETS
from appliance.portal.app import create_portal_app
from appliance.portal.gateways.base import Device
from appliance.portal.identity_provider import IdentityRefused, SignedRedirect, signature
from appliance.portal.settings import ExternalIdentitySettings
from appliance.portal.system import PortalSystem
from tests.portal_support import PHONE, Guest, portal_config, portal_system
from tests.web_support import serve

KEY = "k3y-shared-with-the-provider-0123456789"
GUEST_DEVICE = Device("unknown", "127.0.0.1")


@dataclass
class ProviderStandIn:
    """The provider's page: it has identified whoever arrives as `phone` and sends the browser back
    with a signed answer, as the contract says (a real one asks for an SMS code or an ESIA login)."""

    phone: str = PHONE
    ref: str = "1000299353"
    key: str = KEY
    asked: list[dict[str, str]] = field(default_factory=list)

    def answer(self, for_state: str, **over: str) -> dict[str, str]:
        values = {"state": for_state, "phone": self.phone, "ref": self.ref, "ts": str(int(time.time())), **over}
        return {**values, "sig": signature(self.key, values)}

    async def start(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.asked.append(query)
        back = f"{query['return_url']}?{urlencode(self.answer(query['state']))}"
        return web.Response(status=302, headers={"Location": back})


@asynccontextmanager
async def provider() -> AsyncIterator[tuple[ProviderStandIn, str]]:
    standin = ProviderStandIn()
    app = web.Application()
    app.router.add_get("/wifi/start", standin.start)
    server = TestServer(app)
    await server.start_server()
    try:
        yield standin, str(server.make_url("/wifi/start"))
    finally:
        await server.close()


def external_login(url: str, **over: Any) -> dict[str, Any]:
    settings = {"name": "Госуслуги", "url": f"{url}?partner=shop-1", "reference_prefix": "esia", "secret": KEY}
    return {"methods": ["external", "voucher"], "external": {**settings, **over}}


@asynccontextmanager
async def portal(tmp_path: Path) -> AsyncIterator[tuple[PortalSystem, ProviderStandIn, Any]]:
    async with provider() as (standin, url):
        cfg = portal_config(tmp_path, login=external_login(url))
        async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as client:
            yield system, standin, client


async def _follow(guest: Guest, location: str) -> Any:
    """The browser following a redirect to another site (the guest's own cookies go along)."""
    return await guest.client.session.get(location, allow_redirects=False)


async def test_a_guest_identified_by_the_provider_gets_online_and_is_logged(tmp_path: Path) -> None:
    async with portal(tmp_path) as (system, standin, client):
        guest = Guest(client)
        page = await guest.open("/")
        assert "Вход через Госуслуги" in page and 'action="/login/external"' in page
        assert 'id="external-pd" name="consent_pd" value="yes" required' in page

        without = await guest.post("/login/external", {})
        assert without.status == 400 and "Без согласия на обработку персональных данных" in await without.text()
        assert standin.asked == []

        start = await guest.post("/login/external", {"consent_pd": "yes", "consent_promo": "yes"})
        assert start.status == 303
        to_provider = urlsplit(start.headers["Location"])
        query = {k: v[0] for k, v in parse_qs(to_provider.query).items()}
        assert f"{to_provider.scheme}://{to_provider.netloc}{to_provider.path}".endswith("/wifi/start")
        assert query["partner"] == "shop-1" and query["lang"] == "ru"
        assert query["return_url"] == f"http://127.0.0.1:{client.port}/login/external/done"

        back = await _follow(guest, start.headers["Location"])
        assert back.status == 302 and back.headers["Location"].startswith(query["return_url"] + "?state=")
        done = await _follow(guest, back.headers["Location"])
        assert (done.status, done.headers["Location"]) == (303, "/welcome")
        view = await system.identification.active(GUEST_DEVICE)
        assert view is not None
        assert (view.session.method, view.session.provider_id, view.identity.phone_e164) == (
            "external",
            "esia:1000299353",
            PHONE,
        )
        assert view.session.promotions_consent and view.session.consent_version == system.consent.recorded_version

        # The same answer again (a reload, or someone who copied the address): nothing more happens.
        again = await _follow(guest, back.headers["Location"])
        assert (again.status, again.headers["Location"]) == (303, "/")
        assert len(await system.guests.open_sessions()) == 1


async def test_an_altered_answer_is_refused_and_the_attempt_is_spent(tmp_path: Path) -> None:
    async with portal(tmp_path) as (system, standin, client):
        guest = Guest(client)
        start = await guest.post("/login/external", {"consent_pd": "yes"})
        state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
        forged = standin.answer(state) | {"phone": "+79990000000"}
        refused = await guest.client.get("/login/external/done", params=forged)
        assert refused.status == 400
        assert "Подтвердить вход через сервис не удалось" in await refused.text()
        # The state was used up by the forged answer: the genuine one no longer counts either.
        late = await guest.client.get("/login/external/done", params=standin.answer(state), allow_redirects=False)
        assert (late.status, late.headers["Location"]) == (303, "/")
        assert await system.identification.active(GUEST_DEVICE) is None


async def test_an_answer_meant_for_another_visit_does_not_log_this_one_in(tmp_path: Path) -> None:
    async with portal(tmp_path) as (system, standin, client):
        victim, attacker = Guest(client), Guest(client)
        await victim.post("/login/external", {"consent_pd": "yes"})
        client.session.cookie_jar.clear()  # the attacker's browser: a visit of its own
        start = await attacker.post("/login/external", {"consent_pd": "yes"})
        assert start.status == 303
        victims_answer = standin.answer("a-state-the-attacker-saw-elsewhere")
        refused = await attacker.client.get("/login/external/done", params=victims_answer)
        assert refused.status == 400 and await system.identification.active(GUEST_DEVICE) is None


def _driver(now: datetime | None = None, **over: Any) -> SignedRedirect:
    settings = ExternalIdentitySettings.model_validate(
        {"name": "Сервис", "url": "https://id.example/start", "secret": KEY, "reference_prefix": "lic", **over}
    )
    return SignedRedirect(settings, clock=lambda: now or datetime.now(UTC))


def test_the_driver_accepts_its_providers_fresh_answer() -> None:
    answer = ProviderStandIn(phone="+7 (916) 123-45-67").answer("st")
    who = _driver().verify(answer, "st")
    assert (who.phone_e164, who.reference) == (PHONE, "lic:1000299353")


@pytest.mark.parametrize(
    ("signed", "change", "said"),
    [
        (False, {"sig": "0" * 64}, "signature does not match"),
        (False, {"phone": "+79990000000"}, "signature does not match"),
        (False, {"state": "other"}, "another visit"),
        (True, {"state": "other"}, "another visit"),
        (True, {"ts": "yesterday"}, "not a Unix time"),
        (True, {"ts": str(int(time.time()) - 3600)}, "max_age_s is 300"),
        (True, {"ts": str(int(time.time()) + 3600)}, "max_age_s is 300"),
        (True, {"phone": "+74951234567"}, "not a mobile number"),
        (True, {"phone": ""}, "not a mobile number"),
        (True, {"ref": ""}, "ref must be 1 to 47"),
        (True, {"ref": "x" * 48}, "ref must be 1 to 47"),
    ],
)
def test_the_driver_refuses_what_its_provider_did_not_say_now_for_this_visit(
    signed: bool, change: dict[str, str], said: str
) -> None:
    # signed: the provider's key signed it, but it is wrong in substance; else altered on the way.
    standin = ProviderStandIn()
    answer = standin.answer("st", **change) if signed else standin.answer("st") | change
    with pytest.raises(IdentityRefused, match=said):
        _driver().verify(answer, "st")


def test_answers_under_another_key_fail_and_the_key_is_kept_out_of_the_logs() -> None:
    driver = _driver()
    other = ProviderStandIn(key="another-key-of-at-least-32-characters!").answer("st")
    with pytest.raises(IdentityRefused, match="signature"):
        driver.verify(other, "st")
    assert KEY in SECRETS.values


@pytest.mark.parametrize(
    ("external", "said"),
    [
        ({}, 'external.name: required with the method "external"'),
        ({"name": "X", "url": "https://id.example/"}, 'external.secret: required with the method "external"'),
        ({"name": "X", "url": "http://id.example/", "secret": KEY}, "write the provider's page as https://"),
        ({"name": "X", "url": "https://id.example/", "secret": "short"}, "secret: too short"),
        ({"name": "X", "url": "https://id.example/", "secret": KEY, "reference_prefix": "ESIA"}, "reference_prefix"),
    ],
)
def test_the_external_method_needs_a_complete_provider(external: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"portal": {"login": {"methods": ["external"], "external": external}}})
    assert any(said in problem for problem in info.value.problems), info.value.problems
