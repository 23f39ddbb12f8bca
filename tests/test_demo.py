"""`appliance demo` as a new user runs it: the URLs it prints answer, the login works, cameras stream."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

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


def fetch(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None) -> str:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with opener.open(url, data=body, timeout=10) as resp:
        return str(resp.read().decode())


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
        assert console and portal and login, banner
        assert console.group(1) == f"http://127.0.0.1:{console_port}/"

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
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
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        _, stderr = proc.communicate()
    assert "Traceback" not in stderr, stderr
    assert login.group(2) not in stderr
