"""The daemon as systemd runs it: notify protocol, clean SIGTERM, refusing to start when it cannot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gst_peer import free_port, gst_camera
from tests.xdist_groups import REALTIME

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


SHUTDOWN_CAMERAS = 12
SYSTEMD_STOP_BUDGET_S = 10.0


def _cameras_up(console_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{console_port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.startswith("appliance_camera_up{") and line.endswith(" 1"))


@pytest.mark.slow
@REALTIME
async def test_sigterm_with_many_cameras_finishes_every_segment_in_time(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Many busy cameras (main + sub stream, analysis, recording): SIGTERM still ends the daemon
    with exit code 0 within systemd's budget, every segment indexed complete and chained."""
    from appliance.simulator.server import SimCamera, SimulatorServer
    from tests.simulator_support import TINY, cache_dir

    cams = [SimCamera(f"cam{i}", TINY, phase=i * TINY.duration / SHUTDOWN_CAMERAS) for i in range(SHUTDOWN_CAMERAS)]
    sim = SimulatorServer(cams, cache_dir=cache_dir(tmp_path_factory))
    await sim.start()
    try:
        extra = "[recording]\nsegment_seconds = 3.0\nmin_free_gb = 0.1\n"
        config, console_port = write_config(tmp_path, extra=extra)
        text = config.read_text()
        for cam in cams:
            cid = cam.camera_id
            text += (
                f'[[cameras]]\nid = "{cid}"\nname = "{cid}"\n'
                f'main_url = "{sim.url(cid, "main")}"\nsub_url = "{sim.url(cid, "sub")}"\n'
            )
        config.write_text(text)
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            try:
                deadline = time.monotonic() + 40
                while await asyncio.to_thread(_cameras_up, console_port) < SHUTDOWN_CAMERAS:
                    assert proc.poll() is None, log_path.read_text()[-2000:]
                    assert time.monotonic() < deadline, "the cameras did not come online"
                    await asyncio.sleep(0.5)
                await asyncio.sleep(10)  # several segments per camera, events, a busy index
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.to_thread(proc.wait, 20)
                elapsed = time.monotonic() - started
            finally:
                proc.kill()
                proc.wait()
    finally:
        await sim.stop()
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    problems = [r["msg"] for r in logged if r.get("level") in ("error", "warning") and "database" in str(r)]
    problems += [r["msg"] for r in logged if "did not finish" in r["msg"] or "did not stop" in r["msg"]]
    assert rc == 0 and not problems, problems
    assert elapsed < SYSTEMD_STOP_BUDGET_S
    with sqlite3.connect(tmp_path / "data" / "appliance.db") as db:
        status = dict(db.execute("SELECT status, count(*) FROM segments GROUP BY status").fetchall())
        unchained = db.execute(
            "SELECT count(*) FROM segments WHERE key NOT IN "
            "(SELECT object_key FROM evidence_records WHERE kind = 'segment')"
        ).fetchone()[0]
    assert set(status) == {"complete"} and status["complete"] >= 2 * SHUTDOWN_CAMERAS, status
    assert unchained == 0
    assert not list((tmp_path / "data").rglob("*.part"))
