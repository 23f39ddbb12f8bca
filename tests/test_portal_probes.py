"""Captive-portal detection over real HTTP: operating systems' probes and other sites' addresses
diverted to the portal, before and after login, and the RFC 8908 Captive Portal API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from appliance.config import Config
from appliance.portal import captive_api
from appliance.portal.app import create_portal_app
from appliance.portal.system import PortalSystem
from tests.peers.smsru_standin import SmsRuStandIn
from tests.portal_support import Guest, portal_config, portal_system
from tests.web_support import assert_security_headers, serve

# (Host, path, status after login, body after login)
PROBES = [
    (
        "captive.apple.com",
        "/hotspot-detect.html",
        200,
        "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    ),
    (
        "www.apple.com",
        "/library/test/success.html",
        200,
        "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    ),
    ("connectivitycheck.gstatic.com", "/generate_204", 204, ""),
    ("clients3.google.com", "/generate_204", 204, ""),
    ("connectivitycheck.android.com", "/gen_204", 204, ""),
    ("www.msftconnecttest.com", "/connecttest.txt", 200, "Microsoft Connect Test"),
    ("www.msftncsi.com", "/ncsi.txt", 200, "Microsoft NCSI"),
    (
        "detectportal.firefox.com",
        "/canonical.html",
        200,
        '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>',
    ),
    ("detectportal.firefox.com", "/success.txt", 200, "success\n"),
    ("nmcheck.gnome.org", "/check_network_status.txt", 200, "NetworkManager is online\n"),
    ("network-test.debian.org", "/nm", 200, "NetworkManager is online\n"),
    ("ping.archlinux.org", "/nm-check.txt", 200, "NetworkManager is online\n"),
    ("fedoraproject.org", "/static/hotspot.txt", 200, "OK"),
]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Config, PortalSystem, SmsRuStandIn]]:
    async with SmsRuStandIn.running() as sms:
        cfg = portal_config(tmp_path, sms=sms.sms_config())
        async with portal_system(cfg) as system:
            yield cfg, system, sms


async def _sign_in(guest: Guest, sms: SmsRuStandIn) -> None:
    await guest.ask_code()
    code = sms.last_code("+79161234567")
    assert code is not None
    assert (await guest.enter_code(code)).status == 303


async def test_probes_open_the_login_window_before_and_say_online_after(
    setup: tuple[Config, PortalSystem, SmsRuStandIn],
) -> None:
    cfg, system, sms = setup
    async with serve(create_portal_app(cfg, system)) as client:
        portal = f"http://127.0.0.1:{client.port}/"
        guest = Guest(client)
        for host, path, _, _ in PROBES:
            resp = await client.get(path, headers={"Host": host}, allow_redirects=False)
            assert (resp.status, resp.headers["Location"]) == (302, portal), (host, path)
            assert_security_headers(resp.headers)
            assert resp.headers["Cache-Control"] == "no-store"
        await _sign_in(guest, sms)
        for host, path, status, body in PROBES:
            resp = await client.get(path, headers={"Host": host}, allow_redirects=False)
            assert (resp.status, await resp.text()) == (status, body), (host, path)


async def test_other_sites_are_sent_to_the_portal_with_their_address(
    setup: tuple[Config, PortalSystem, SmsRuStandIn],
) -> None:
    cfg, system, sms = setup
    async with serve(create_portal_app(cfg, system)) as client:
        resp = await client.get("/news/today?x=1", headers={"Host": "example.ru"}, allow_redirects=False)
        location = urlsplit(resp.headers["Location"])
        assert resp.status == 302 and f"{location.scheme}://{location.netloc}{location.path}" == (
            f"http://127.0.0.1:{client.port}/"
        )
        assert parse_qs(location.query) == {"dst": ["http://example.ru/news/today?x=1"]}
        posted = await client.post("/form", headers={"Host": "example.ru"}, allow_redirects=False)
        assert (posted.status, posted.headers["Location"]) == (302, f"http://127.0.0.1:{client.port}/")
        # Following it: the sign-in page, which shows the site as a link once the guest is online.
        guest = Guest(client)
        await guest.open(f"{location.path}?{location.query}")
        await _sign_in(guest, sms)
        assert '<a href="http://example.ru/news/today?x=1" rel="noopener noreferrer">' in await guest.open("/welcome")
        after = await client.get("/news/today", headers={"Host": "example.ru"}, allow_redirects=False)
        assert (after.status, after.headers["Location"]) == (302, f"http://127.0.0.1:{client.port}/")


async def test_probes_answer_by_device(setup: tuple[Config, PortalSystem, SmsRuStandIn]) -> None:
    cfg, system, sms = setup
    app = create_portal_app(cfg, system)
    async with serve(app) as online, serve(app, source_ip="127.0.0.2") as other:
        await _sign_in(Guest(online), sms)
        assert (await online.get("/generate_204", headers={"Host": "clients3.google.com"})).status == 204
        still = await other.get("/generate_204", headers={"Host": "clients3.google.com"}, allow_redirects=False)
        assert still.status == 302


async def test_captive_portal_api(setup: tuple[Config, PortalSystem, SmsRuStandIn]) -> None:
    cfg, system, sms = setup
    async with serve(create_portal_app(cfg, system)) as client:
        base = f"http://127.0.0.1:{client.port}"
        before = await client.get("/api/captive")
        assert before.headers["Content-Type"] == "application/captive+json"
        assert before.headers["Cache-Control"] == "private, no-store"
        assert json.loads(await before.read()) == {
            "captive": True,
            "user-portal-url": f"{base}/",
            "venue-info-url": f"{base}/venue",
        }
        await _sign_in(Guest(client), sms)
        after = json.loads(await (await client.get("/api/captive")).read())
        assert after["captive"] is False and after["can-extend-session"] is True
        assert 4 * 3600 - 60 < after["seconds-remaining"] <= 4 * 3600
        venue = await client.get(after["venue-info-url"].removeprefix(base))
        assert venue.status == 200 and "Акции магазина" in await venue.text()


async def test_captive_api_names_the_public_https_address(tmp_path: Path) -> None:
    cfg = portal_config(tmp_path, login={"public_url": "https://wifi.shop.example/", "remember_days": 0})
    async with portal_system(cfg) as system, serve(create_portal_app(cfg, system)) as client:
        doc = json.loads(await (await client.get("/api/captive")).read())
        assert doc == {
            "captive": True,
            "user-portal-url": "https://wifi.shop.example/",
            "venue-info-url": "https://wifi.shop.example/venue",
        }
        # A probe is sent to the public name too; that name is one of ours.
        probe = await client.get("/hotspot-detect.html", headers={"Host": "captive.apple.com"}, allow_redirects=False)
        assert probe.headers["Location"] == "https://wifi.shop.example/"
        own = await client.get("/", headers={"Host": "wifi.shop.example"}, allow_redirects=False)
        assert own.status == 200


def test_the_dnsmasq_snippet_points_option_114_at_the_api() -> None:
    snippet = (Path(__file__).resolve().parent.parent / "config" / "dnsmasq-captive.conf").read_text()
    [line] = [ln for ln in snippet.splitlines() if ln.startswith("dhcp-option=114,")]
    uri = urlsplit(line.split(",", 1)[1].strip('"'))
    assert uri.scheme == "https" and uri.path == "/api/captive"
    assert uri.path in {r.path for r in captive_api.routes if isinstance(r, web.RouteDef)}
