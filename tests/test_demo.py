"""`appliance demo` as a new user runs it: the URLs it prints answer, the login works, cameras stream,
a guest signs in with the SMS code the demo phone shows, and alerts reach the demo phone through
the outbox."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.demo import DEMO_USER, demo_config, prepare_demo_data
from appliance.demo_phone import CHANNEL_ID, PhoneKeys
from appliance.demo_promos import DEMO_PROMOS, POSTER_SIZE
from appliance.portal.promo_images import PromoImages
from appliance.portal.promotions import PromotionStore
from appliance.portal.system import PROMO_IMAGES_DIRNAME
from appliance.storage.db import engine_from_config, make_sessionmaker
from appliance.storage.users import UserStore
from tests.gst_peer import free_port

ROOT = Path(__file__).resolve().parent.parent


def read_banner(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            return "".join(lines)
    raise AssertionError(f"the demo printed no banner: {''.join(lines)!r}")


def fetch_bytes(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None) -> bytes:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with opener.open(url, data=body, timeout=10) as resp:
        return bytes(resp.read())


def fetch(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None) -> str:
    return fetch_bytes(opener, url, data).decode()


def browser() -> urllib.request.OpenerDirector:
    """A browser of its own: the staff's and the guest's cookies must not mix."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def csrf(html: str) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, html
    return token.group(1)


def until(check: Callable[[], str | None], timeout: float, what: str) -> str:
    """Poll `check` until it returns a page; fails with the last page seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout} s")


def guest_signs_in(portal: str, phone: str, inbox: Callable[[], str]) -> str:
    """A guest's phone login over HTTP; the code is read where the demo shows it. Returns the code."""
    guest = browser()
    start = fetch(guest, portal)
    assert all(p.title in start for p in DEMO_PROMOS), start
    image = re.search(r'src="(/promo-images/\d+\.jpg\?v=\w+)"', start)
    assert image, start
    assert fetch_bytes(guest, portal + image.group(1)[1:]).startswith(b"\xff\xd8\xff")
    code_page = fetch(guest, portal + "login/phone", {"phone": phone, "consent_pd": "yes", "csrf_token": csrf(start)})
    sms = re.search(r"<h2>SMS на (\+[\d -]+)</h2>.*?Код для Wi-Fi: (\d{6})", inbox(), re.S)
    assert sms and sms.group(1) == phone, inbox()
    code = sms.group(2)
    with pytest.raises(urllib.error.HTTPError) as wrong:
        fetch(guest, portal + "login/code", {"code": f"{(int(code) + 1) % 10**6:06d}", "csrf_token": csrf(code_page)})
    wrong.value.close()
    assert wrong.value.code == 400
    welcome = fetch(guest, portal + "login/code", {"code": code, "csrf_token": csrf(code_page)})
    assert "Вы вошли в гостевую сеть" in welcome, welcome  # the demo has no gateway: not "connected"
    return code


def alerts_arrive(staff: urllib.request.OpenerDirector, console: str) -> None:
    """A test alert sent from /alerts, and a motion alert's snapshot and clip, reach the demo phone
    through the outbox, and /alerts counts them delivered."""
    fetch(staff, console + "alerts/test", {"channel": CHANNEL_ID, "csrf_token": csrf(fetch(staff, console + "alerts"))})

    def phone_has_them() -> str | None:
        inbox = fetch(staff, console + "inbox")
        return inbox if all(t in inbox for t in ("Проверка оповещений", "<h2>Движение: ", "<video")) else None

    inbox = until(phone_has_them, 120, "the test alert, a motion snapshot and its clip reach the demo phone")
    snapshot = re.search(r'<h2>Движение: [^<]+</h2>.*?<img src="(/inbox/\d+/image)"', inbox, re.S)
    clip = re.search(r'<video [^>]*src="(/inbox/\d+/clip)"', inbox)
    assert snapshot and clip, inbox
    assert fetch_bytes(staff, console + snapshot.group(1)[1:]).startswith(b"\xff\xd8\xff")
    assert fetch_bytes(staff, console + clip.group(1)[1:])[4:8] == b"ftyp"
    alerts = fetch(staff, console + "alerts")
    delivered = re.search(r'data-state="delivered">Доставлено: (\d+)<', alerts)
    assert delivered and int(delivered.group(1)) >= 3, alerts
    assert 'data-state="failed">Не доставлено: 0<' in alerts
    assert re.search(r"проверка · сообщение</td>\s*<td[^>]*>Доставлено<", alerts), alerts


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_serves_what_it_prints(tmp_path: Path) -> None:
    console_port, portal_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "demo",
            "--console-port",
            str(console_port),
            "--portal-port",
            str(portal_port),
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        banner = read_banner(proc, 180)
        console = re.search(r"Staff console:\s+(\S+)", banner)
        portal = re.search(r"Guest Wi-Fi portal:\s+(\S+)", banner)
        login = re.search(r"login: (\S+)\s+password: (\S+)", banner)
        phone = re.search(r"phone number (\+[\d -]+\d)", banner)
        assert console and portal and login and phone, banner
        assert console.group(1) == f"http://127.0.0.1:{console_port}/"

        opener = browser()
        assert "Wi-Fi" in fetch(opener, portal.group(1))
        form = fetch(opener, console.group(1) + "login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        fetch(
            opener,
            console.group(1) + "login",
            {"username": login.group(1), "password": login.group(2), "csrf_token": token.group(1)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dashboard = fetch(opener, console.group(1))
            if dashboard.count("1280×720") >= 2:
                break
            time.sleep(1)
        assert "Вход" in dashboard and "Касса" in dashboard and dashboard.count("1280×720") >= 2, dashboard
        inbox = fetch(opener, console.group(1) + "inbox")
        assert "Камера «Вход» в сети" in inbox
        code = guest_signs_in(portal.group(1), phone.group(1), lambda: fetch(opener, console.group(1) + "inbox"))
        alerts_arrive(opener, console.group(1))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert login.group(2) not in stderr
    assert not re.search(rf"\b{code}\b", stderr), "the guest's code is in the log"


async def test_demo_data_is_prepared_once(tmp_path: Path) -> None:
    """A demo kept with --data-dir starts again with a new password and the owner's promotions as left."""
    cfg = demo_config(tmp_path, 2, 8554, 8080, 8081, PhoneKeys(8082))
    await prepare_demo_data(cfg, "first password")
    await prepare_demo_data(cfg, "second password")
    engine = engine_from_config(cfg)
    try:
        sessions = make_sessionmaker(engine)
        promos = await PromotionStore(sessions).list()
        users = UserStore(sessions)
        assert await users.verify(DEMO_USER, "second password") is not None
        assert await users.verify(DEMO_USER, "first password") is None
    finally:
        await engine.dispose()
    assert [p.title for p in promos] == [d.title for d in DEMO_PROMOS]
    images = PromoImages(tmp_path / PROMO_IMAGES_DIRNAME)
    for promo in promos:
        assert promo.image_url is not None
        picture = cv2.imdecode(np.frombuffer(images.path(promo.id).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape == (POSTER_SIZE[1], POSTER_SIZE[0], 3)
