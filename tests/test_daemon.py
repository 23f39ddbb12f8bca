"""The daemon as systemd runs it: notify protocol, clean SIGTERM, refusing to start when it cannot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gst_peer import free_port, gst_camera

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, extra: str = "", camera_url: str | None = None) -> tuple[Path, int]:
    console_port, portal_port = free_port(), free_port()
    text = (
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'
        f"[console]\nport = {console_port}\n[portal]\nport = {portal_port}\n"
        '[logging]\nformat = "json"\n'
        "[daemon]\nrestart_backoff_initial_s = 0.2\n"
        f"{extra}"
    )
    if camera_url:
        text += f'[[cameras]]\nid = "till"\nname = "Касса"\nmain_url = "{camera_url}"\n'
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path, console_port


def start(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    yield sock, path
    sock.close()


def collect(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Notify messages (one line each) up to and including the first that starts with `until`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        lines += data.splitlines()
        if any(line.startswith(until) for line in lines):
            return lines
    raise AssertionError(f"no {until} within {timeout} s; got {lines}")


@pytest.mark.slow
def test_ready_watchdog_status_and_clean_sigterm(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    with gst_camera() as peer:
        config, console_port = write_config(tmp_path, camera_url=peer.url())
        proc = start(config, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
        try:
            assert "READY=1" in collect(sock, "READY=1", 30)
            # READY means the listeners are open: the console answers right away.
            with urllib.request.urlopen(f"http://127.0.0.1:{console_port}/healthz", timeout=5) as resp:
                assert resp.status == 200
            seen = collect(sock, "WATCHDOG=1", 3)
            seen += collect(sock, "STATUS=1/1 cameras online", 20)
            assert seen.count("WATCHDOG=1") >= 2, "the watchdog pings every half interval"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in collect(sock, "STOPPING=1", 10)
            rc = proc.wait(timeout=10)
            elapsed = time.monotonic() - started
        finally:
            proc.kill()
            _, stderr = proc.communicate()
    assert rc == 0, stderr
    assert elapsed < 10
    events = [json.loads(line)["msg"] for line in stderr.splitlines() if line.startswith("{")]
    assert "appliance started" in events and events[-1] == "stopped"


@pytest.mark.slow
def test_port_in_use_is_a_clear_startup_failure(tmp_path: Path) -> None:
    config, console_port = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", console_port))
        taken.listen()
        proc = start(config)
        _, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{console_port}" in stderr and "change console.port" in stderr


@pytest.mark.slow
def test_unreachable_database_fails_without_leaking_the_password(tmp_path: Path) -> None:
    dead = free_port()
    extra = f'[database]\nurl = "postgresql+asyncpg://shop@127.0.0.1:{dead}/appliance"\npassword = "Db-Secret-31"\n'
    config, _ = write_config(tmp_path, extra=extra)
    proc = start(config)
    _, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 1
    assert "cannot open the database" in stderr and f"127.0.0.1:{dead}" in stderr
    assert "Db-Secret-31" not in stderr
