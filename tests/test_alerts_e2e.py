"""Alerts through the real daemon (`appliance run`, a subprocess) with a simulated camera and a local
webhook endpoint: a shopper walking in gives a snapshot alert, then the clip; alerts queued while
the endpoint is down survive a kill -9 and are delivered after the restart, once each."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import pytest

from appliance.simulator.server import SimCamera, SimulatorServer
from tests.alerts_support import SECRET, Received, WebhookReceiver, signed_correctly, webhook_receiver
from tests.gst_peer import free_port
from tests.simulator_support import cache_dir
from tests.test_cameras_e2e import start_daemon


@pytest.fixture
async def simulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer([SimCamera("kassa", "store_day_person")], cache_dir=cache_dir(tmp_path_factory))
    await server.start()
    yield server
    await server.stop()


def write_config(tmp_path: Path, sim: SimulatorServer, rx: WebhookReceiver) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[console]\nport = {free_port()}\n[portal]\nenabled = false\n[logging]\nformat = "json"\n'
        '[alerts]\nconsole_url = "https://shop.example.org"\nretry_initial_s = 0.2\nretry_max_s = 1.0\n'
        f'[[alerts.channels]]\nid = "owner"\nkind = "webhook"\nurl = "{rx.url}"\nsecret = "{SECRET}"\ncooldown_s = 0\n'
        f'[[cameras]]\nid = "kassa"\nname = "Касса"\nmain_url = "{sim.url("kassa", "main")}"\n'
        f'sub_url = "{sim.url("kassa", "sub")}"\n'
        "[cameras.events]\npre_roll_s = 3.0\npost_roll_s = 2.0\nmerge_gap_s = 2.0\n"
    )
    return path


def outbox(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute("select * from alert_outbox order by id"))


async def wait_rows(db: Path, wanted: Callable[[sqlite3.Row], bool], timeout: float) -> list[sqlite3.Row]:
    """The outbox rows `wanted` accepts, once there is one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            found = [r for r in outbox(db) if wanted(r)]
        except sqlite3.OperationalError:  # no database or no table yet
            found = []
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"no such outbox row within {timeout} s")


def stop(daemon: subprocess.Popen[str]) -> str:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    err = daemon.stderr.read() if daemon.stderr else ""
    if daemon.stderr:
        daemon.stderr.close()
    return err


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_snapshot_then_clip_and_queued_alerts_survive_kill_9(tmp_path: Path, simulator: SimulatorServer) -> None:
    db = tmp_path / "data" / "appliance.db"
    async with webhook_receiver() as rx:
        config = write_config(tmp_path, simulator, rx)
        daemon = start_daemon(config)
        try:
            # A shopper enters every 20 s: the snapshot alert, then the clip of the same event.
            first = (await rx.wait_for(1, timeout=60))[0]
            assert first.doc["part"] == "snapshot" and first.doc["title"] == "Движение: Касса"
            event_id = first.doc["event_id"]
            clip = next(r for r in await _wait_clip(rx, event_id) if r.doc["part"] == "clip")
            assert rx.received.index(first) < rx.received.index(clip)
            assert all(signed_correctly(r) for r in (first, clip))
            assert base64.b64decode(first.doc["snapshot_jpeg_base64"])[:2] == b"\xff\xd8"
            mp4 = base64.b64decode(clip.doc["clip"]["mp4_base64"])
            with av.open(io.BytesIO(mp4)) as container:
                seconds = container.duration / 1e6 if container.duration else 0.0
                frames = sum(1 for _ in container.decode(video=0))
            assert 1.0 <= seconds <= 10.05 and frames > 10
            assert first.doc["link"] == f"https://shop.example.org/events/{event_id}"

            # The phone is unreachable; the next shopper's alert waits in the outbox; the box loses power.
            await rx.go_down()
            queued = await wait_rows(db, lambda r: r["state"] == "pending" and r["event_id"] != event_id, 45)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
        finally:
            stop(daemon)

        before = len(rx.received)
        await rx.come_back()
        daemon = start_daemon(config)
        try:
            ids = {str(r["id"]) for r in queued}
            await _wait_ids(rx, ids, 60)
        finally:
            err = stop(daemon)
    delivered = [r.alert_id for r in rx.received[before:]]
    assert len(delivered) == len(set(delivered)), f"delivered twice: {delivered}"
    assert daemon.returncode == 0, err[-2000:]
    states = {str(r["id"]): r["state"] for r in outbox(db)}
    assert {states[i] for i in ids} == {"delivered"}


async def _wait_clip(rx: WebhookReceiver, event_id: str) -> list[Received]:
    for _ in range(600):
        if any(r.doc["part"] == "clip" and r.doc["event_id"] == event_id for r in rx.received):
            return rx.received
        await asyncio.sleep(0.1)
    raise AssertionError(f"no clip alert for {event_id}: {[r.doc['part'] for r in rx.received]}")


async def _wait_ids(rx: WebhookReceiver, ids: set[str], timeout: float) -> None:
    for _ in range(int(timeout * 10)):
        if ids <= {r.alert_id for r in rx.received}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"alerts {sorted(ids)} not delivered after the restart")
