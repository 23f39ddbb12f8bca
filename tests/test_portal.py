"""The guest portal over real HTTP: what a guest's phone sees, and what it must never reach."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from appliance.alerts.inbox import DemoInbox
from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.console.app import create_console_app
from appliance.portal.app import create_portal_app
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import portal_config, portal_system
from tests.web_support import assert_security_headers, serve, user_store

Client = TestClient[Any, Any]
# Console addresses, including ones that exist only with the demo inbox or after sign-in.
CONSOLE_PATHS = ["/login", "/logout", "/metrics", "/inbox", "/inbox/1/image", "/static/console.css"]
# A cheap phone on a busy shop Wi-Fi: the whole first view stays within a few kilobytes (the fullest
# sign-in page has two forms, each with its two consents, in two-byte Cyrillic).
MAX_PAGE_BYTES = 6 * 1024
MAX_CSS_BYTES = 3072


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return portal_config(tmp_path)


@pytest.fixture
async def client(cfg: Config) -> AsyncIterator[Client]:
    async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as c:
        yield c


async def test_landing_page_in_russian_explains_the_law_and_offers_what_works(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    text = await resp.text()
    assert '<html lang="ru">' in text
    assert "Магазин у дома" in text
    assert "№ 758" in text
    # No SMS provider is configured: vouchers are the way in, and no phone form promises codes.
    assert 'action="/login/voucher"' in text and 'action="/login/phone"' not in text
    assert "пока не настроен" not in text
    assert '<a href="/?lang=en" hreflang="en" lang="en">English</a>' in text


async def test_landing_page_is_honest_when_no_way_in_works(tmp_path: Path) -> None:
    cfg = portal_config(tmp_path, login={"methods": ["sms"]})
    async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as c:
        text = await (await c.get("/")).text()
    assert "пока не настроен" in text and "обратитесь к сотрудникам" in text and "<form" not in text


async def test_landing_page_in_english_via_the_switch(client: Client) -> None:
    text = await (await client.get("/?lang=en")).text()
    assert '<html lang="en">' in text
    assert "Decree No. 758" in text and "Sign in with a voucher" in text
    assert '<a href="/?lang=ru" hreflang="ru" lang="ru">Русский</a>' in text
    # The choice sticks for the next page.
    assert '<html lang="en">' in await (await client.get("/")).text()


async def test_english_phone_gets_english(client: Client) -> None:
    text = await (await client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})).text()
    assert "Guest Wi-Fi" in text


async def test_page_is_tiny_and_works_without_javascript(tmp_path: Path) -> None:
    # The fullest sign-in page: every method offered.
    async with SmsRuStandIn.running() as sms:
        cfg = portal_config(tmp_path, sms=sms.sms_config(), login={"methods": ["sms", "call", "voucher"]})
        async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as client:
            page = await (await client.get("/")).read()
            css_resp = await client.get("/static/portal.css")
            css = await css_resp.read()
    assert page.count(b"<form") == 2
    assert css_resp.status == 200
    assert len(page) <= MAX_PAGE_BYTES and len(css) <= MAX_CSS_BYTES, (len(page), len(css))
    text = page.decode()
    assert "<script" not in text and " on" not in re.sub(r">[^<]*<", "><", text)  # no inline handlers
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text


@pytest.mark.parametrize("path", CONSOLE_PATHS)
async def test_no_console_address_exists_on_the_portal(client: Client, path: str) -> None:
    for method in ("GET", "POST"):
        resp = await client.request(method, path, allow_redirects=False)
        # The portal's own /static folder answers POST with 405 whatever the file name.
        expected = 405 if method == "POST" and path.startswith("/static/") else 404
        assert resp.status == expected, (method, path)


def _paths(app: web.Application) -> set[str]:
    return {resource.canonical for resource in app.router.resources()}


async def test_only_the_shared_basics_have_the_same_address_on_both_apps(cfg: Config) -> None:
    """Every console route is compared, not only the list above: a new console page stays off the portal."""
    async with portal_system(cfg) as system, user_store(cfg, with_admin=False) as users:
        console = create_console_app(cfg, users, StatusBoard(), list, inbox=DemoInbox(), features=system.console)
        portal = create_portal_app(cfg, system)
    # A home page, a readiness check and each app's own /static folder; nothing else.
    assert _paths(console) & _paths(portal) == {"/", "/healthz", "/static"}
    assert {"/login/phone", "/api/captive", "/venue"} <= _paths(portal)
    assert {"/login", "/metrics", "/inbox"} <= _paths(console)


async def test_healthz_does_not_reveal_the_version(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_404_page_is_in_the_guests_language_and_looks_like_the_portal(client: Client) -> None:
    ru = await client.get("/hotspot-detect.html")
    text = await ru.text()
    assert ru.status == 404 and "Страница не найдена" in text and "/static/portal.css" in text
    en = await client.get("/hotspot-detect.html", headers={"Accept-Language": "en"})
    assert "Page not found" in await en.text()


@pytest.mark.parametrize("path", ["/", "/static/portal.css", "/nope", "/healthz"])
async def test_security_headers(client: Client, path: str) -> None:
    assert_security_headers((await client.get(path)).headers)


async def test_store_name_is_escaped(tmp_path: Path) -> None:
    cfg = portal_config(tmp_path, name="<b>Shop</b>")
    async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as c:
        text = await (await c.get("/")).text()
    assert "<b>Shop</b>" not in text and "&lt;b&gt;Shop&lt;/b&gt;" in text
