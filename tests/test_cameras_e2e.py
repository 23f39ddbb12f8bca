"""The camera side end to end, as the daemon runs it: simulated scenes with known ground truth and a
GStreamer camera in, events, clips, segments and the evidence chain out; then a kill -9, a restart,
and tampering with a recorded file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from appliance.simulator.server import SimCamera, SimulatorServer
from tests.gst_peer import free_port, gst_camera
from tests.xdist_groups import REALTIME

ROOT = Path(__file__).resolve().parent.parent
SCENES = {
    "day": "store_day_person",
    "night": "store_night_ir_person",
    "light": "light_switch",
    "ir": "ir_switch",
    "noise": "night_noise",
}
QUIET = ("light", "ir", "noise")
PRE_ROLL_S = 3.0
RUN_S = 48.0
"""Two passes of the 20 s scenes after the daemon connected."""


def utc(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer([SimCamera(cid, scene) for cid, scene in SCENES.items()])
    await server.start()
    yield server
    await server.stop()


def write_config(tmp_path: Path, sim: SimulatorServer, gst_url: str) -> Path:
    cams = ""
    for cid in [*SCENES, "gst"]:
        main = gst_url if cid == "gst" else sim.url(cid, "main")
        sub = "" if cid == "gst" else f'sub_url = "{sim.url(cid, "sub")}"\n'
        cams += (
            f'[[cameras]]\nid = "{cid}"\nname = "{cid}"\nmain_url = "{main}"\n{sub}'
            f"[cameras.events]\npre_roll_s = {PRE_ROLL_S}\npost_roll_s = 3.0\nmerge_gap_s = 3.0\nmax_event_s = 60\n"
        )
    text = (
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n'
        f"[console]\nport = {free_port()}\n[portal]\nenabled = false\n"
        '[logging]\nformat = "json"\n[recording]\nsegment_seconds = 6.0\nmin_free_gb = 0.1\n' + cams
    )
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def start_daemon(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def rows(db: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(query))


def entries(sim: SimulatorServer, cid: str, since: datetime, until: datetime) -> list[datetime]:
    """UTC times at which a figure entered camera `cid` between `since` and `until`."""
    scene = sim.scene(cid)
    period = timedelta(seconds=sim.loop_duration(cid))
    start = sim.loop_start(cid) - 4 * period
    out = []
    while start < until:
        for fig in scene.figures:
            t = start + timedelta(seconds=fig.enters_at)
            if since <= t <= until:
                out.append(t)
        start += period
    return out


def ffprobe_errors(path: Path) -> str:
    result = subprocess.run(["ffprobe", "-v", "error", "-i", str(path)], capture_output=True, text=True, check=False)
    return result.stderr.strip()


def verify(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "footage", "verify", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@REALTIME
@pytest.mark.timeout(300)
async def test_events_clips_crash_and_tamper(tmp_path: Path, simulator: SimulatorServer) -> None:
    with gst_camera() as gst:
        config = write_config(tmp_path, simulator, gst.url())
        db = tmp_path / "data" / "appliance.db"
        footage = tmp_path / "data" / "footage"
        started = datetime.now(UTC)
        daemon = start_daemon(config)
        try:
            await asyncio.sleep(RUN_S)
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            # kill -9 in the middle of recording: at most the last fragment may be lost.
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
            killed_at = datetime.now(UTC)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else ""
        if daemon.stderr:
            daemon.stderr.close()
        events = rows(db, "select * from events where kind = 'motion'")

        # A figure entering is an event within 1 s, by day and at night under IR.
        for cid in ("day", "night"):
            mine = [e for e in events if e["camera_id"] == cid]
            truth = entries(simulator, cid, started + timedelta(seconds=8), killed_at - timedelta(seconds=6))
            assert truth, "the run saw a figure enter"
            for entered in truth:
                near = [utc(e["start_utc"]) for e in mine if abs((utc(e["start_utc"]) - entered).total_seconds()) < 3]
                starts = [e["start_utc"] for e in mine]
                assert near, f"{cid}: no event for the figure entering at {entered}; event starts {starts}"
                assert abs((near[0] - entered).total_seconds()) <= 1.0, (cid, near[0], entered)
        # Switches and noise are not events.
        for cid in QUIET:
            assert not [e for e in events if e["camera_id"] == cid], f"false event on {cid}"
        # The GStreamer camera's ball never stops moving: it has events too (a peer we did not write).
        assert [e for e in events if e["camera_id"] == "gst"]

        # Each finished segment carries its motion summary: the walk is in it, the switches are not.
        segs = rows(db, "select key, camera_id, has_motion, motion_heatmap from segments where status = 'complete'")
        assert any(s["has_motion"] and s["motion_heatmap"] for s in segs if s["camera_id"] == "day")
        moved = [(s["camera_id"], s["key"]) for s in segs if s["camera_id"] in QUIET and s["has_motion"]]
        assert not moved, moved

        # Clips: playable, hashed, starting at least the pre-roll before the trigger.
        clipped = [e for e in events if e["clip_key"]]
        assert clipped, f"no clip was made: {stderr[-3000:]}"
        for event in clipped:
            path = footage / event["clip_key"]
            assert ffprobe_errors(path) == ""
            with av.open(str(path)) as clip:
                stream = clip.streams.video[0]
                duration = float(stream.duration * stream.time_base) if stream.duration else clip.duration / 1e6
            expected = (utc(event["clip_to"]) - utc(event["clip_from"])).total_seconds()
            assert expected - 0.5 <= duration <= expected + 2.5, (duration, expected)
            first_frame = utc(event["clip_from"])
            assert (utc(event["start_utc"]) - first_frame).total_seconds() >= PRE_ROLL_S - 0.01
            assert event["clip_sha256"] and len(event["clip_sha256"]) == 64
            assert event["snapshot_jpeg"][:2] == b"\xff\xd8"

        # Restart after the kill: reconciled, every file plays, the index matches the files.
        daemon = start_daemon(config)
        try:
            await asyncio.sleep(12)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
            if daemon.stderr:
                daemon.stderr.close()
        segments = rows(db, "select * from segments where status = 'complete'")
        indexed = {s["key"] for s in segments}
        on_disk = {
            str(p.relative_to(footage)) for p in footage.rglob("*.mp4") if not str(p).startswith(str(footage / "clips"))
        }
        assert on_disk == indexed
        assert not list(footage.rglob("*.part"))
        for key in sorted(indexed)[:: max(1, len(indexed) // 12)]:
            assert ffprobe_errors(footage / key) == "", key

        # The evidence chain: intact, then one byte changed in a recorded segment is found.
        clean = verify(config)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        victim = footage / sorted(indexed)[len(indexed) // 2]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        tampered = verify(config)
        assert tampered.returncode == 1
        assert "content changed" in tampered.stdout + tampered.stderr
        assert victim.name in tampered.stdout + tampered.stderr
