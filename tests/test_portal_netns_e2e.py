"""The guest Wi-Fi end to end, as it runs in a shop: the real daemon (`appliance run`) inside the
gateway namespace with the `nftables` driver, a guest namespace that has nothing but `curl` (a
browser that runs no scripts: it keeps cookies and sends the forms), an "internet" namespace with
a web server and the SMS.ru stand-in, and staff using the console from the box itself.

    guest ns ── gw-guest (daemon: portal on 10.99.1.1:8081, console on 127.0.0.1:8080) ── inet ns
                                           │                      web :80 :443, SMS.ru stand-in :9100
                                           └── lan ns: a camera's web page :80 (private address)

The console listens on the gateway's loopback only, so staff requests are `curl` inside the gateway
namespace. The SMS code is read from the stand-in, as a guest reads it from the phone.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest

from appliance.portal.log_export import BOM, DELIMITER
from appliance.portal.vouchers import VoucherStore
from appliance.storage.db import create_engine, make_sessionmaker
from tests import netns_support
from tests.netns_support import PYTHON, Topology
from tests.peers.smsru_standin import DEFAULT_API_ID
from tests.web_support import csrf_token
from tests.xdist_groups import NETNS

pytestmark = NETNS

APPLIANCE: Final = Path(sys.executable).with_name("appliance")
PORTAL_PORT: Final = 8081
CONSOLE_PORT: Final = 8080
STANDIN_PORT: Final = 9100
PHONE: Final = "+79161234567"
CONSENT_VERSION: Final = "e2e-1"
STAFF, STAFF_PASSWORD = "olga", "till password 42"
INTERNET_PAGE: Final = "INTERNET"
VOUCHER_LEFT_S: Final = 8.0
"""How long the short session's voucher still has when it is issued."""
_MARK: Final = "\n@@curl@@"
_REVOKE_FORM = re.compile(r'action="/guests/([A-Za-z0-9_-]+)/revoke"')


@dataclass(frozen=True)
class Answer:
    exit_code: int
    """curl's: 0 got an answer, 7 refused or reset, 28 timed out."""
    status: int
    location: str
    body: str
    elapsed_s: float


class Curl:
    """`curl` inside one namespace with a cookie jar of its own; redirects are not followed."""

    def __init__(self, net: Topology, ns: str, jar: Path) -> None:
        self.net, self.ns, self.jar = net, ns, jar

    async def request(self, url: str, *options: str, max_time_s: float = 5.0) -> Answer:
        result = await self.net.exec(
            self.ns,
            "curl",
            "-s",
            "-g",
            "-m",
            f"{max_time_s:g}",
            "-b",
            str(self.jar),
            "-c",
            str(self.jar),
            "-w",
            _MARK + "%{http_code} %{redirect_url}",
            *options,
            url,
            timeout_s=max_time_s + 10,
        )
        body, _, tail = result.stdout.rpartition(_MARK)
        status, _, location = tail.partition(" ")
        return Answer(result.returncode, int(status or 0), location.strip(), body, result.elapsed_s)

    async def get(self, url: str, *, max_time_s: float = 5.0) -> Answer:
        return await self.request(url, max_time_s=max_time_s)

    async def post(self, url: str, fields: dict[str, str]) -> Answer:
        data = [part for name, value in fields.items() for part in ("--data-urlencode", f"{name}={value}")]
        return await self.request(url, *data)


@dataclass
class Shop:
    net: Topology
    work: Path
    daemon: subprocess.Popen[bytes]
    db_url: str

    @property
    def portal(self) -> str:
        return f"http://{self.net.gateway_guest_ip}:{PORTAL_PORT}"

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{CONSOLE_PORT}"

    @property
    def site(self) -> str:
        return f"http://{self.net.internet_ip}/"

    def browser(self, ns: str, name: str) -> Curl:
        return Curl(self.net, ns, self.work / f"{name}.cookies")

    async def sms_code(self, phone: str) -> str:
        """The code in the last SMS the stand-in accepted for `phone` (what the guest's phone shows)."""
        url = f"http://{self.net.internet_ip}:{STANDIN_PORT}/_standin/messages"
        got = await self.net.exec(self.net.internet, "curl", "-s", "-G", "--data-urlencode", f"to={phone}", url)
        messages = json.loads(got.stdout)["messages"]
        assert messages, f"no SMS reached the provider for {phone}"
        match = re.search(r"\b(\d{6})\b", messages[-1]["text"])
        assert match is not None, messages[-1]["text"]
        return match.group(1)

    async def staff_console(self) -> tuple[Curl, str]:
        """Staff signed in to the console (on the box itself); the session's CSRF token."""
        staff = self.browser(self.net.gateway, "staff")
        form = await staff.get(f"{self.console}/login")
        assert form.status == 200, form
        signed_in = await staff.post(
            f"{self.console}/login",
            {"username": STAFF, "password": STAFF_PASSWORD, "csrf_token": csrf_token(form.body)},
        )
        assert signed_in.status == 303, signed_in.body[-2000:]
        home = await staff.get(f"{self.console}/")
        return staff, csrf_token(home.body)

    def log_tail(self) -> str:
        logs = sorted(self.net.log_dir.glob("*-appliance.log"))
        return logs[-1].read_text(errors="replace")[-4000:] if logs else ""


def _config(net: Topology, work: Path) -> str:
    return f"""
[appliance]
name = "Кофейня e2e"
data_dir = "{work / "data"}"
[console]
host = "127.0.0.1"
port = {CONSOLE_PORT}
[portal]
host = "{net.gateway_guest_ip}"
port = {PORTAL_PORT}
[portal.login]
consent_version = "{CONSENT_VERSION}"
[portal.gateway]
driver = "nftables"
[portal.gateway.nftables]
interface = "{net.gateway_guest_if}"
[portal.sms]
provider = "smsru"
api_key = "{DEFAULT_API_ID}"
base_url = "http://{net.internet_ip}:{STANDIN_PORT}"
[logging]
format = "text"
"""


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    reason = netns_support.unavailable_reason()
    if reason is not None:
        pytest.skip(f"guest Wi-Fi end to end: {reason}")
    with netns_support.topology("portal") as net:
        work = net.log_dir
        www = work / "www"
        www.mkdir()
        (www / "index.html").write_text(INTERNET_PAGE + "\n")
        for port in (80, 443):  # 443 serves plain HTTP: after login it must simply get through
            net.start(
                net.internet, PYTHON, "-m", "http.server", str(port), "--bind", "::", "-d", str(www), ready="Serving"
            )
        # A camera's web page on the shop's LAN, which guests must never reach.
        net.start(net.lan, PYTHON, "-m", "http.server", "80", "--bind", "::", "-d", str(www), ready="Serving")
        standin = ["-m", "tests.peers.smsru_standin", str(STANDIN_PORT), DEFAULT_API_ID]
        net.start(net.internet, PYTHON, *standin, ready="ready")
        config = work / "appliance.toml"
        config.write_text(_config(net, work))
        subprocess.run(
            [str(APPLIANCE), "user", "add", STAFF, "--role", "admin", "--password-stdin", "--config", str(config)],
            input=f"{STAFF_PASSWORD}\n".encode(),
            cwd=netns_support.REPO,
            capture_output=True,
            check=True,
            timeout=60,
        )
        daemon = net.start(net.gateway, str(APPLIANCE), "run", "--config", str(config), ready="appliance started")
        shop = Shop(net, work, daemon, f"sqlite+aiosqlite:///{work / 'data' / 'appliance.db'}")
        yield shop
        assert net.stop(daemon) == 0, shop.log_tail()
        assert "appliance_portal" not in net.run(net.gateway, "nft", "list", "tables"), "the table outlived the daemon"


async def until_portal(shop: Shop, guest: Curl, within_s: float) -> Answer:
    """The guest's request for the site, once it is diverted to the portal (the gateway installs its
    table just after the listeners open; a revoked or ended session closes within moments)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = await guest.get(shop.site, max_time_s=2)
        if answer.status == 302 and answer.location.startswith(f"{shop.portal}/"):
            return answer
        assert time.monotonic() < deadline, f"the site is not diverted to the portal: {answer}\n{shop.log_tail()}"
        await asyncio.sleep(0.3)


async def sign_in_page(shop: Shop, guest: Curl) -> str:
    """The guest opens the site, lands on the portal's sign-in page; its CSRF token."""
    diverted = await until_portal(shop, guest, within_s=10)
    page = await guest.get(diverted.location)
    assert page.status == 200 and 'action="/login/phone"' in page.body, page
    return csrf_token(page.body)


@pytest.mark.slow
async def test_before_login_the_web_is_the_portal_https_is_refused_and_the_console_is_out_of_reach(
    shop: Shop,
) -> None:
    guest = shop.browser(shop.net.guest, "preauth")
    diverted = await until_portal(shop, guest, within_s=10)
    assert diverted.location == f"{shop.portal}/?dst=http%3A%2F%2F{shop.net.internet_ip}%2F"
    # An Android phone's probe, to whatever address DNS gave it: the redirect that opens the login window.
    probe = await guest.request(
        f"http://{shop.net.internet_ip}/generate_204", "-H", "Host: connectivitycheck.gstatic.com"
    )
    assert probe.status == 302 and probe.location.startswith(f"{shop.portal}/")

    https = await guest.request(f"https://{shop.net.internet_ip}/", "-k")
    assert https.exit_code == 7, f"443 must be refused with a reset, not dropped or intercepted: {https}"
    assert https.elapsed_s < 2

    from_guest = await guest.get(f"http://{shop.net.gateway_guest_ip}:{CONSOLE_PORT}/login", max_time_s=2)
    assert from_guest.exit_code != 0 and from_guest.status == 0, "the guest network reaches the console"
    on_the_box = await shop.browser(shop.net.gateway, "box").get(f"{shop.console}/login")
    assert on_the_box.status == 200, "the console itself is up (on the box's loopback)"


@pytest.mark.slow
async def test_a_guest_signs_in_with_an_sms_code_and_staff_cut_them_off(shop: Shop) -> None:
    net = shop.net
    guest = shop.browser(net.guest, "phone-guest")
    token = await sign_in_page(shop, guest)
    asked = await guest.post(
        f"{shop.portal}/login/phone", {"phone": PHONE, "method": "sms", "consent_pd": "yes", "csrf_token": token}
    )
    assert (asked.status, asked.location) == (303, f"{shop.portal}/login/code"), asked.body[-2000:]
    code_page = await guest.get(f"{shop.portal}/login/code")
    entered = await guest.post(
        f"{shop.portal}/login/code", {"code": await shop.sms_code(PHONE), "csrf_token": csrf_token(code_page.body)}
    )
    assert (entered.status, entered.location) == (303, f"{shop.portal}/welcome"), entered.body[-2000:]

    through = await guest.get(shop.site)
    assert (through.status, through.body.strip()) == (200, INTERNET_PAGE), through
    assert (await guest.get(f"http://{net.internet_ip}:443/")).body.strip() == INTERNET_PAGE, "nothing intercepted"
    still_out = await guest.get(f"http://{net.gateway_guest_ip}:{CONSOLE_PORT}/login", max_time_s=2)
    assert still_out.status == 0, "signed in, the guest still must not reach the console"
    camera = await guest.get(f"http://{net.lan_ip}/", max_time_s=2)
    assert camera.exit_code == 7, f"signed in, the guest must be refused the camera LAN at once: {camera}"

    staff, staff_token = await shop.staff_console()
    online = await staff.get(f"{shop.console}/guests")
    sessions = _REVOKE_FORM.findall(online.body)
    assert len(sessions) == 1, online.body[-3000:]
    revoked = await staff.post(f"{shop.console}/guests/{sessions[0]}/revoke", {"csrf_token": staff_token})
    assert revoked.status == 303 and "done=revoked" in revoked.location, revoked
    await until_portal(shop, guest, within_s=3)

    # The identification log, as exported for a lawful request.
    export = await staff.post(f"{shop.console}/guests/log/export", {"request_ref": "e2e", "csrf_token": staff_token})
    assert export.status == 200, export.body[-2000:]
    exported = csv.DictReader(io.StringIO(export.body.removeprefix(BOM)), delimiter=DELIMITER)
    (row,) = [r for r in exported if r["session_id"] == sessions[0]]
    assert row["phone_e164"] == PHONE and row["method"] == "sms" and row["gateway"] == "nftables"
    assert row["mac"] == net.mac(net.guest, net.guest_if), "the MAC the box saw, from its neighbour table"
    assert row["ip"] == net.guest_ip
    assert row["consent_version"].startswith(f"{CONSENT_VERSION}#"), "the version with the hash of the texts shown"
    start, stop = datetime.fromisoformat(row["start_utc"]), datetime.fromisoformat(row["stop_utc"])
    assert start <= stop <= datetime.now(UTC) and stop - start < timedelta(minutes=1)
    assert row["end_reason"] == "revoked"


@pytest.mark.slow
async def test_when_a_session_ends_the_guest_is_back_at_the_portal(shop: Shop) -> None:
    # The session timeout cannot be set below 5 minutes; a voucher's end cuts a session short the
    # same way (the grant's timeout): one issued an hour ago for an hour has seconds left.
    engine = create_engine(shop.db_url)
    try:
        issued = datetime.now(UTC) - timedelta(hours=1, seconds=-VOUCHER_LEFT_S)
        vouchers = VoucherStore(make_sessionmaker(engine))
        _, code = await vouchers.issue("Иван Петров", "passport_rf", None, STAFF, 1, 1, now_utc=issued)
    finally:
        await engine.dispose()
    ends_at = time.monotonic() + VOUCHER_LEFT_S

    guest = shop.browser(shop.net.guest, "voucher-guest")
    token = await sign_in_page(shop, guest)
    signed_in = await guest.post(
        f"{shop.portal}/login/voucher", {"voucher": code, "consent_pd": "yes", "csrf_token": token}
    )
    assert (signed_in.status, signed_in.location) == (303, f"{shop.portal}/welcome"), signed_in.body[-2000:]
    assert (await guest.get(shop.site)).body.strip() == INTERNET_PAGE
    await until_portal(shop, guest, within_s=VOUCHER_LEFT_S + 5)
    assert time.monotonic() > ends_at - 1.5, "cut off well before the session's end"
