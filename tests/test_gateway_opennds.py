"""The `opennds` gateway driver (this box as openNDS's FAS): level 1 (base64 + hid), level 3
(AES-256-CBC made by PHP exactly as openNDS 9.10 makes it) and the authmon exchange over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from appliance.config import ConfigError, parse_config
from appliance.portal.gateways.base import Device, GatewayError, Grant
from appliance.portal.gateways.opennds import OpenNdsGateway
from appliance.portal.gateways.opennds_fas import gateway_hash
from appliance.portal.gateways.settings import OpenNdsSettings
from appliance.portal.upkeep import SessionSweeper
from tests import netns_support
from tests.portal_support import portal_config, portal_system

FASKEY = "s3cretFasKey2026"
GATEWAY = "192.168.8.1:2050"
LANDING = "http://192.168.8.2:8081/welcome"
MAC = "04:15:52:6a:e4:ad"
TOKEN = "770bfe05"
"""The client's secret token: only its sha256 (hid) ever leaves the router."""
HID = hashlib.sha256(TOKEN.encode()).hexdigest()
GRANT = Grant(
    "sess-42", session_timeout_s=5400, idle_timeout_s=900, down_kbit_s=4000, up_kbit_s=1000, quota_bytes=10**9
)
PHP = shutil.which("php")
needs_php = pytest.mark.skipif(
    PHP is None, reason="php-cli missing (openNDS encrypts with PHP): apt-get install php-cli"
)


def settings(**over: Any) -> OpenNdsSettings:
    data = {"faskey": FASKEY, "gateway_address": GATEWAY, "landing_url": LANDING, **over}
    return OpenNdsSettings.model_validate(data)


def query_string(*, hid: str = HID, mac: str = MAC, ip: str = "192.168.8.23", gatewayaddress: str = GATEWAY) -> str:
    """The parameters in openNDS 9.10's order and format (src/http_microhttpd.c, construct_querystring)."""
    return ", ".join(
        [
            f"hid={hid}",
            f"clientip={ip}",
            f"clientmac={mac}",
            "client_type=cpd_can",
            "gatewayname=Shop%20Wi-Fi",
            "gatewayurl=http%3a%2f%2f192.168.8.1",
            "version=9.10.0",
            f"gatewayaddress={gatewayaddress}",
            "gatewaymac=00:11:22:33:44:55",
            "authdir=opennds_auth",
            "originurl=http%3a%2f%2fconnectivitycheck.gstatic.com%2fgenerate_204",
            "clientif=br-lan",
            "themespec=(null)",
            "",
        ]
    )


def level1_request(text: str) -> web.Request:
    fas = base64.b64encode(text.encode()).decode()
    return make_mocked_request("GET", f"/opennds/fas?fas={fas}")


# The encryption openNDS 9.10 runs for levels 2 and 3 (src/http_microhttpd.c), fed by argv.
PHP_ENCRYPT = r"""
$key=$argv[1];
$string=$argv[2];
$cipher="aes-256-cbc";
$secret_iv = base64_encode(openssl_random_pseudo_bytes("8"));
$iv = substr(openssl_digest($secret_iv, "sha256"), 0, 16 );
$string = base64_encode( openssl_encrypt( $string, $cipher, $key, 0, $iv ) );
echo "?fas=".$string."&iv=".$iv;
"""


def php_encrypted_query(text: str, faskey: str = FASKEY) -> str:
    assert PHP is not None
    out = subprocess.run([PHP, "-r", PHP_ENCRYPT, faskey, text], capture_output=True, text=True, check=True)
    return out.stdout  # not URL-encoded: openNDS puts it in the Location header as it is


# ------------------------------------------------------------------------------- level 1 ---


async def test_level1_identifies_the_device_and_keeps_the_hid() -> None:
    gw = OpenNdsGateway(settings())
    assert await gw.identify(level1_request(query_string())) == Device(MAC, "192.168.8.23", HID)


async def test_level1_auth_url_carries_sha256_of_hid_and_faskey_as_the_router_computes_it() -> None:
    gw = OpenNdsGateway(settings())
    device = await gw.identify(level1_request(query_string()))
    assert device is not None
    url = await gw.allow(device, GRANT)
    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", GATEWAY, "/opennds_auth/")
    query = parse_qs(parts.query)
    # The router's own check: `printf '%s' "$hid$faskey" | sha256sum` (src/util.c, hash_str).
    router = subprocess.run(
        ["sh", "-c", 'printf "%s" "$1" | sha256sum', "sh", HID + FASKEY], capture_output=True, text=True, check=True
    )
    assert query["tok"] == [router.stdout.split()[0]]
    assert query["redir"] == [LANDING]
    assert (await gw.status(device)).authorised


async def test_level1_a_forged_mac_changes_the_log_not_who_gets_in() -> None:
    """Level 1's limit, stated as a test: the MAC is the browser's word, the access is the hid's."""
    gw = OpenNdsGateway(settings())
    forged = await gw.identify(level1_request(query_string(mac="66:66:66:66:66:66")))
    honest = await gw.identify(level1_request(query_string()))
    assert forged is not None and honest is not None
    assert forged.mac != honest.mac
    assert await gw.allow(forged, GRANT) == await gw.allow(honest, GRANT)  # the same tok: only hid's owner


@pytest.mark.parametrize(
    "text",
    [
        query_string(gatewayaddress="10.6.6.6:2050"),  # someone else's router: the auth URL would go there
        query_string(hid="not-a-hash"),
        query_string(mac="zz:zz"),
        query_string(ip="999.1.1.1"),
        "clientip=192.168.8.23, clientmac=04:15:52:6a:e4:ad",
        "",
    ],
)
async def test_level1_refuses_parameters_openNDS_would_not_send(text: str) -> None:
    assert await OpenNdsGateway(settings()).identify(level1_request(text)) is None


async def test_level1_refuses_what_is_not_base64_and_ignores_requests_without_fas() -> None:
    gw = OpenNdsGateway(settings())
    assert await gw.identify(make_mocked_request("GET", "/opennds/fas?fas=%%%not-base64")) is None
    assert await gw.identify(make_mocked_request("GET", "/?mac=04:15:52:6a:e4:ad")) is None


async def test_allow_refuses_a_device_that_did_not_come_through_the_router() -> None:
    with pytest.raises(GatewayError, match="redirect"):
        await OpenNdsGateway(settings()).allow(Device(MAC, "192.168.8.23"), GRANT)


async def test_revoke_says_what_to_run_on_the_router() -> None:
    gw = OpenNdsGateway(settings())
    device = await gw.identify(level1_request(query_string()))
    assert device is not None
    await gw.allow(device, GRANT)
    with pytest.raises(GatewayError, match=f"ndsctl deauth {MAC}"):
        await gw.revoke(device)
    assert not (await gw.status(device)).authorised


async def test_the_portal_leaves_opennds_sessions_to_their_timeout(tmp_path: Path) -> None:
    # The driver knows only its own grants, lost at a restart: asking it would end every session
    # the router still serves, and write a false end into the identification log.
    opennds = {"faskey": FASKEY, "gateway_address": GATEWAY, "landing_url": LANDING}
    cfg = portal_config(tmp_path, gateway={"driver": "opennds", "opennds": opennds})
    async with portal_system(cfg) as system:
        [run] = [run for name, run, _ in system.components if name == "guest-sessions"]
        sweeper = run.__self__  # type: ignore[attr-defined]
    assert isinstance(sweeper, SessionSweeper) and sweeper.ask_gateway is False


def test_missing_settings_refuse_to_build() -> None:
    with pytest.raises(GatewayError) as info:
        OpenNdsGateway(OpenNdsSettings())
    assert all(k in str(info.value) for k in ("opennds.faskey", "opennds.gateway_address", "opennds.landing_url"))


@pytest.mark.parametrize(
    ("opennds", "said"),
    [
        ({"faskey": "has a space"}, "faskey: use 8 to 64 characters without spaces"),
        ({"faskey": "short"}, "faskey: use 8 to 64 characters"),
        ({"gateway_address": "http://192.168.8.1"}, "portal.gateway.opennds.gateway_address"),
        ({"fas_secure_enabled": 2}, "portal.gateway.opennds.fas_secure_enabled"),
        ({"landing_url": "javascript:alert(1)"}, "landing_url: not an http:// or https:// address"),
    ],
)
def test_bad_opennds_settings_name_the_key(opennds: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        parse_config({"portal": {"gateway": {"opennds": opennds}}})


# ------------------------------------------------------------------------------- level 3 ---


def level3_request(query: str) -> web.Request:
    return make_mocked_request("GET", "/opennds/fas" + query)


@needs_php
@pytest.mark.parametrize("faskey", [FASKEY, "k" * 40])  # PHP pads short keys and cuts long ones
async def test_level3_decrypts_what_openNDS_encrypts(faskey: str) -> None:
    gw = OpenNdsGateway(settings(fas_secure_enabled=3, faskey=faskey))
    device = await gw.identify(level3_request(php_encrypted_query(query_string(), faskey)))
    assert device == Device(MAC, "192.168.8.23", HID)


@needs_php
async def test_level3_refuses_another_key_and_altered_ciphertext() -> None:
    gw = OpenNdsGateway(settings(fas_secure_enabled=3))
    other_key = php_encrypted_query(query_string(), "an0therFasKey")
    assert await gw.identify(level3_request(other_key)) is None
    query = php_encrypted_query(query_string())
    fas = parse_qs(urlsplit(query).query)["fas"][0]
    raw = bytearray(base64.b64decode(base64.b64decode(fas)))
    raw[40] ^= 0x55  # a bit flip in the middle garbles two blocks, including the MAC's neighbourhood
    tampered = base64.b64encode(base64.b64encode(bytes(raw))).decode()
    iv = parse_qs(urlsplit(query).query)["iv"][0]
    assert await gw.identify(level3_request(f"?fas={quote(tampered)}&iv={iv}")) is None
    assert await gw.identify(level3_request(f"?fas={quote(fas)}&iv=short")) is None


# --------------------------------------------------------------------------- authmon (level 3) ---


@pytest.fixture
async def level3() -> AsyncIterator[tuple[OpenNdsGateway, str]]:
    gw = OpenNdsGateway(settings(fas_secure_enabled=3, authmon_sources=["127.0.0.1"], authmon_wait_s=5))
    app = web.Application()
    routes = gw.portal_routes()
    app.router.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield gw, str(server.make_url("/opennds/fas"))
    finally:
        await server.close()
        await gw.stop()


async def authmon_post(url: str, action: str, payload: str = "none", gatewayname: str = "Shop%20Wi-Fi") -> str:
    """What openNDS's authmon.sh sends through post-request.php: a form with a base64 payload."""
    form = {
        "auth_get": action,
        "gatewayhash": gateway_hash(gatewayname),
        "payload": base64.b64encode(payload.encode()).decode(),
    }
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        assert resp.status == 200
        return (await resp.text()).strip()


async def test_authmon_collects_the_login_and_its_ack_completes_allow(level3: tuple[OpenNdsGateway, str]) -> None:
    gw, url = level3
    device = Device(MAC, "192.168.8.23", HID)
    assert await authmon_post(url, "clear") == ""
    assert await authmon_post(url, "view") == "*"  # nothing to collect yet
    allowing = asyncio.create_task(gw.allow(device, GRANT))
    for _ in range(100):
        listed = await authmon_post(url, "view")
        if listed != "*":
            break
        await asyncio.sleep(0.02)
    validator, entry = listed.split(" ", 1)
    # authmon.sh decodes each entry (printf of %xx) and runs `ndsctl auth <entry>`.
    fields = unquote(entry).split(" ")
    rhid = hashlib.sha256((HID + FASKEY).encode()).hexdigest()
    assert validator == "*"
    assert fields[:6] == [rhid, "90", "1000", "4000", "976563", "976563"]
    assert base64.b64decode(fields[6]) == b"session=sess-42"
    assert not allowing.done()  # a listed login is not done until the router acknowledges it
    assert await authmon_post(url, "view", f"* {rhid}") == "ack"
    assert await asyncio.wait_for(allowing, 5) is None
    assert (await gw.status(device)).authorised
    assert await authmon_post(url, "view") == "*"


async def test_authmon_list_mode_hands_out_and_forgets(level3: tuple[OpenNdsGateway, str]) -> None:
    gw, url = level3
    allowing = asyncio.create_task(gw.allow(Device(MAC, "192.168.8.23", HID), GRANT))
    await asyncio.sleep(0.05)
    listed = await authmon_post(url, "list")
    assert listed.startswith("* ") and len(listed.split(" ")) == 2
    assert await asyncio.wait_for(allowing, 5) is None
    assert await authmon_post(url, "list") == "*"


async def test_authmon_notices_are_acknowledged_and_garbage_refused(level3: tuple[OpenNdsGateway, str]) -> None:
    _, url = level3
    assert await authmon_post(url, "deauthed", "mac=04:15:52:6a:e4:ad reason=idle_deauthentication") == "ack"
    async with aiohttp.ClientSession() as http:
        for form in ({"auth_get": "view", "gatewayhash": "nothex"}, {"auth_get": "fly", "gatewayhash": "a" * 64}):
            async with http.post(url, data=form) as resp:
                assert resp.status == 400


@pytest.mark.slow
async def test_allow_fails_with_advice_when_the_router_never_collects(level3: tuple[OpenNdsGateway, str]) -> None:
    gw, url = level3
    with pytest.raises(GatewayError, match="fas_secure_enabled 3"):
        await gw.allow(Device(MAC, "192.168.8.23", HID), GRANT)
    assert await authmon_post(url, "view") == "*"  # the failed login is not left for the router


async def test_authmon_from_another_address_is_refused() -> None:
    gw = OpenNdsGateway(settings(fas_secure_enabled=3))  # default: only the router's own address
    app = web.Application()
    app.router.add_routes(gw.portal_routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        form = {"auth_get": "view", "gatewayhash": "a" * 64, "payload": "bm9uZQ=="}
        async with aiohttp.ClientSession() as http, http.post(server.make_url("/opennds/fas"), data=form) as resp:
            assert resp.status == 403
    finally:
        await server.close()


async def test_the_routers_redirect_lands_on_the_login_page_with_its_parameters(
    level3: tuple[OpenNdsGateway, str],
) -> None:
    _, url = level3
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "?fas=abc%2B&iv=0123456789abcdef", allow_redirects=False) as resp,
    ):
        assert resp.status == 302
        assert resp.headers["Location"] == "/?fas=abc%2B&iv=0123456789abcdef"


# ------------------------------------------------------------------ against a real openNDS ---

OPENNDS_WRAPPER = Path(__file__).parent / "peers" / "opennds_gateway.sh"
FAS_PORT = 8081


def opennds_unavailable() -> str | None:
    missing = [t for t in ("opennds", "iptables-legacy", "unshare", "sha256sum") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install opennds iptables util-linux coreutils)"
    return netns_support.unavailable_reason()


def _fas_of(location: str) -> dict[str, str]:
    fas = parse_qs(urlsplit(location).query)["fas"][0]
    fields = base64.b64decode(fas).decode().split(", ")
    return dict(f.split("=", 1) for f in fields if "=" in f)


def _with_fas(location: str, fields: dict[str, str]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in fields.items())
    return location.split("?", 1)[0] + "?fas=" + quote(base64.b64encode(text.encode()).decode())


@pytest.mark.slow
async def test_real_opennds_lets_in_only_the_device_whose_hid_the_portal_answered(tmp_path: Path) -> None:
    if (reason := opennds_unavailable()) is not None:
        pytest.skip(reason)
    with netns_support.topology("nds") as net:
        inet, gw_ip = net.internet_ip, net.gateway_guest_ip
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "index.html").write_text("INTERNET\n")
        identified = tmp_path / "identified.jsonl"
        net.start(
            net.internet,
            netns_support.PYTHON,
            "-m",
            "http.server",
            "80",
            "--bind",
            inet,
            "--directory",
            str(tmp_path / "www"),
            ready="Serving HTTP",
        )
        net.start(
            net.internet,
            netns_support.PYTHON,
            "-m",
            "tests.peers.opennds_fas",
            "--host",
            inet,
            "--port",
            str(FAS_PORT),
            "--gateway",
            f"{gw_ip}:2050",
            "--landing",
            f"http://{inet}/",
            "--faskey",
            FASKEY,
            "--log",
            str(identified),
            ready="FAS ready",
        )
        conf = tmp_path / "opennds.conf"
        conf.write_text(
            f"GatewayInterface {net.gateway_guest_if}\nGatewayAddress {gw_ip}\nGatewayName ShopTest\n"
            f"GatewayPort 2050\nMaxClients 20\nlogin_option_enabled 0\nfasport {FAS_PORT}\nfasremoteip {inet}\n"
            f"faspath /opennds/fas\nfas_secure_enabled 1\nfaskey {FASKEY}\n"
        )
        guest_mac = net.mac(net.guest, net.guest_if)
        lease = f"{int(time.time()) + 3600} {guest_mac} {net.guest_ip} guest *"
        net.start(
            net.gateway,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            str(OPENNDS_WRAPPER),
            str(conf),
            lease,
            ready="openNDS is now running",
        )
        redirect = "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"

        before = await net.curl(f"http://{inet}/", *redirect)
        code, location = before.stdout.split(" ", 1)
        assert code == "307" and location.startswith(f"http://{inet}:{FAS_PORT}/opennds/fas?fas=")
        fas = _fas_of(location)
        assert (fas["clientmac"], fas["clientip"], fas["gatewayaddress"]) == (guest_mac, net.guest_ip, f"{gw_ip}:2050")

        # A guest that rewrites its parameters (another MAC, a hid it made up) gets a token the
        # router does not take: the portal signed a hid no client of the router holds.
        forged = {**fas, "clientmac": "66:66:66:66:66:66", "hid": hashlib.sha256(b"made up").hexdigest()}
        via_fas = await net.curl(_with_fas(location, forged), *redirect)
        to_login = await net.curl(via_fas.stdout.split(" ", 1)[1], *redirect)
        code, auth_url = to_login.stdout.split(" ", 1)
        assert code == "302" and auth_url.startswith(f"http://{gw_ip}:2050/opennds_auth/?tok=")
        refused = await net.curl(auth_url, *redirect)
        # The router sends it back to the FAS, with its own (true) parameters, instead of to redir.
        assert refused.stdout.startswith(f"307 http://{inet}:{FAS_PORT}/opennds/fas?fas=")
        assert _fas_of(refused.stdout.split(" ", 1)[1])["clientmac"] == guest_mac
        still_out = await net.curl(f"http://{inet}/", *redirect)
        assert still_out.stdout.startswith("307 ")

        # The device itself, through the router's redirect and the portal: in, and the portal
        # logged the MAC the router reported.
        through = await net.curl(f"http://{inet}/", "-L", max_time_s=10)
        assert through.stdout == "INTERNET\n"
        assert json.loads(identified.read_text().splitlines()[-1])["mac"] == guest_mac
        after = await net.curl(f"http://{inet}/", *redirect)
        assert after.stdout == "200 "
