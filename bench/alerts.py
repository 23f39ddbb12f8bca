"""How fast alerts reach the owner: motion onset to snapshot alert, and draining a backlog.

1. Latency. N simulated cameras (scene `store_day_person`: a shopper walks in at 4 s of every 20 s
   loop; cameras staggered by 20 / N s) served from this process, the daemon (`python -m appliance
   run`, SQLite) in a subprocess with a signed webhook channel (cooldown 0: every event alerts) to a
   receiver in this process. For every snapshot alert received the benchmark splits the latency:
   - onset -> alert: the figure starts entering the picture (the scene's script) to the alert's arrival;
   - onset -> event: to events.created_at, the camera side (decoding, detection, confirmation);
   - event -> alert: events.created_at to the arrival, the alert side (bus, outbox row, dispatcher,
     composing, signing, HTTP).
   Baseline, measured in the same run: a bare signed POST of a snapshot-sized alert to the same
   receiver (what any sender pays); the alert side is reported as a ratio to it.
2. Drain. The alert side alone in this process (SQLite in a temporary folder): 1,000 motion alerts
   are stored while the endpoint refuses connections, then it comes back; the time until the last
   one arrives. Baseline: the same 1,000 signed POSTs sent back to back by a bare client.

Run: .venv/bin/python bench/alerts.py [--cameras 10] [--events 50] [--drain 1000]
A default run takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.alerts.channel import Alert  # noqa: E402
from appliance.alerts.channels.webhook import WebhookChannel  # noqa: E402
from appliance.alerts.system import build_alerts  # noqa: E402
from appliance.bus import EventBus  # noqa: E402
from appliance.cameras.events import EventStarted, event_id_for  # noqa: E402
from appliance.cameras.messages import EventOpened  # noqa: E402
from appliance.config import parse_config  # noqa: E402
from appliance.simulator.scene import HappeningKind  # noqa: E402
from appliance.simulator.server import SimCamera, SimulatorServer  # noqa: E402
from appliance.storage.db import create_engine, make_sessionmaker  # noqa: E402
from appliance.storage.events import EventStore  # noqa: E402
from appliance.storage.migrate import upgrade  # noqa: E402
from bench.cameras import free_port, percentile, stop_process, wait_online  # noqa: E402

SCENE = "store_day_person"
SECRET = "bench-webhook-secret-0123456789"
WARMUP_S = 8.0
"""After every camera is online, before alerts count (the detectors settle)."""
MATCH_S = 8.0
"""An alert arriving this long after a shopper entered still belongs to that entry."""
EARLY_S = 0.5
TARGET_P95_S = 1.0
TARGET_DRAIN_S = 30.0
BASELINE_POSTS = 50


@dataclass
class Arrival:
    wall: float
    """time.time() when the request reached the receiver's handler."""
    doc: dict[str, Any]


@dataclass
class Receiver:
    """The local webhook endpoint: records arrivals; `down` refuses connections."""

    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        wall = time.time()
        self.arrivals.append(Arrival(wall, json.loads(await request.read())))
        self.arrived.set()
        return web.Response(text="ok")

    async def wait(self, enough: Callable[[], bool], seconds: float) -> None:
        """Until `enough()` holds after an arrival, or `seconds` passed."""
        deadline = time.monotonic() + seconds
        while not enough() and (left := deadline - time.monotonic()) > 0:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.arrived.wait()

    async def up(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def snapshot_jpeg() -> bytes:
    """A JPEG the size of a real 640x360 snapshot (a textured picture, quality 80)."""
    rng = np.random.default_rng(1)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (5, 5), 0)
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


def bench_alert(n: int, jpeg: bytes) -> Alert:
    return Alert(
        alert_id=str(n),
        kind="motion",
        part="snapshot",
        title="Движение: Касса",
        body="Касса: движение в 23:15:03.\nМагазин",
        occurred_utc=datetime.now(UTC),
        camera_id="cam1",
        camera_name="Касса",
        event_id=f"cam1-{n}",
        snapshot_jpeg=jpeg,
    )


async def bare_posts(url: str, count: int, jpeg: bytes) -> list[float]:
    """Seconds per signed POST of a snapshot alert, sent one after another by a bare client."""
    channel = WebhookChannel("baseline", url, SECRET, 8 * 1024 * 1024)
    times = []
    try:
        for n in range(count):
            started = time.perf_counter()
            await channel.send(bench_alert(n, jpeg))
            times.append(time.perf_counter() - started)
    finally:
        await channel.close()
    return times


# ---------------------------------------------------------------------------------- latency ---


def daemon_config(data_dir: Path, sim: SimulatorServer, cameras: Sequence[str], console_port: int, url: str) -> str:
    lines = [
        f'[appliance]\nname = "bench"\ndata_dir = "{data_dir}"',
        f"[console]\nport = {console_port}\n[portal]\nenabled = false",
        '[logging]\nlevel = "warning"\nformat = "json"',
        '[alerts]\nconsole_url = "http://127.0.0.1"',
        f'[[alerts.channels]]\nid = "owner"\nkind = "webhook"\nurl = "{url}"\nsecret = "{SECRET}"\n'
        'kinds = ["motion"]\ncooldown_s = 0',
    ]
    for cid in cameras:
        lines.append(
            f'[[cameras]]\nid = "{cid}"\nname = "{cid}"\nmain_url = "{sim.url(cid, "main")}"\n'
            f'sub_url = "{sim.url(cid, "sub")}"\n[cameras.events]\nmerge_gap_s = 1.0\npost_roll_s = 1.0'
        )
    return "\n".join(lines) + "\n"


def entries(sim: SimulatorServer, cid: str, t0: float, t1: float) -> list[float]:
    """When (UTC timestamps) a figure started entering the camera's picture within [t0, t1)."""
    scene = sim.scene(cid)
    enters = [h.t for h in scene.timeline() if h.kind is HappeningKind.FIGURE_ENTERS]
    period = sim.loop_duration(cid)
    start = sim.loop_start(cid).timestamp() - period * (1 + (time.time() - t0) // period)
    out = []
    while start < t1:
        out += [start + t for t in enters if t0 <= start + t < t1]
        start += period
    return sorted(out)


def created_at(db: Path) -> dict[str, float]:
    """events.created_at by event id, as timestamps."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, created_at FROM events WHERE kind = 'motion'").fetchall()
    out = {}
    for event_id, text in rows:
        value = datetime.fromisoformat(text)
        out[event_id] = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return out


@dataclass
class Latency:
    onset_alert: list[float] = field(default_factory=list)
    onset_event: list[float] = field(default_factory=list)
    event_alert: list[float] = field(default_factory=list)
    entries: int = 0
    missed: int = 0
    baseline: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def measure_latency(cameras: int, events: int, say: Any) -> Latency:
    ids = [f"cam{i + 1}" for i in range(cameras)]
    duration = 20.0
    sim = SimulatorServer([SimCamera(cid, SCENE, phase=i * duration / cameras) for i, cid in enumerate(ids)])
    rx = Receiver()
    await rx.up()
    await sim.start()
    out = Latency()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        work = Path(tmp)
        port = free_port()
        config = work / "appliance.toml"
        config.write_text(daemon_config(work / "data", sim, ids, port, rx.url))
        log = (work / "daemon.log").open("w")
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "appliance", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            await asyncio.to_thread(wait_online, proc, port, cameras)
            await asyncio.sleep(WARMUP_S)
            t0 = time.time()
            say(f"latency: {cameras} cameras online; waiting for {events} alerts")
            # One entry per camera per loop: enough loops for the events asked for, and some slack.
            window = duration * (events / cameras + 1)
            await rx.wait(lambda: len(_snapshots(rx, t0)) >= events + cameras, window)
            t1 = time.time() - MATCH_S
            out.baseline = await bare_posts(rx.url, BASELINE_POSTS, snapshot_jpeg())
        finally:
            note = await asyncio.to_thread(stop_process, proc, "the daemon")
            log.close()
            await sim.stop()
            await rx.down()
        if note:
            out.notes.append(note)
        created = created_at(work / "data" / "appliance.db")
        arrivals = _snapshots(rx, t0)
        for cid in ids:
            mine = sorted((a for a in arrivals if a.doc["camera"]["id"] == cid), key=lambda a: a.wall)
            used: set[int] = set()
            for entry in entries(sim, cid, t0, t1):
                out.entries += 1
                match = next(
                    (i for i, a in enumerate(mine) if i not in used and entry - EARLY_S <= a.wall <= entry + MATCH_S),
                    None,
                )
                if match is None:
                    out.missed += 1
                    continue
                used.add(match)
                arrival = mine[match]
                out.onset_alert.append(arrival.wall - entry)
                event_at = created.get(arrival.doc["event_id"])
                if event_at is not None:
                    out.onset_event.append(event_at - entry)
                    out.event_alert.append(arrival.wall - event_at)
    return out


def _snapshots(rx: Receiver, since: float) -> list[Arrival]:
    return [a for a in rx.arrivals if a.doc["part"] == "snapshot" and a.wall >= since]


# ------------------------------------------------------------------------------------ drain ---


@dataclass
class Drain:
    count: int
    back_to_last: float
    """The endpoint back to the last alert received."""
    first_to_last: float
    baseline: float
    """The same number of signed POSTs, back to back, by a bare client."""
    duplicates: int
    newest_first: bool


async def measure_drain(count: int, say: Any) -> Drain:
    jpeg = snapshot_jpeg()
    rx = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        cfg = parse_config(
            {
                "appliance": {"data_dir": tmp},
                "alerts": {
                    "retry_initial_s": 0.2,
                    "retry_max_s": 1.0,
                    "channels": [{"id": "owner", "kind": "webhook", "url": rx.url, "secret": SECRET, "cooldown_s": 0}],
                },
                "cameras": [{"id": "cam1", "name": "Касса", "main_url": "rtsp://127.0.0.1:9/x"}],
            }
        )
        engine = create_engine(cfg.database_url)
        await upgrade(engine)
        bus = EventBus()
        built = await build_alerts(cfg, make_sessionmaker(engine), bus)
        tasks = [asyncio.create_task(component()) for _, component, _ in built.components]
        try:
            await asyncio.sleep(0.1)
            # Events of the last two hours, stored with their snapshots as the pipeline stores them: all
            # but the newest snapshots have left the in-memory cache and are read from the events table.
            events = EventStore(make_sessionmaker(engine))
            start = datetime.now(UTC) - timedelta(hours=2)
            for n in range(count):
                at = start + timedelta(seconds=7 * n)
                event_id = event_id_for("cam1", at)
                await events.started(EventStarted(event_id, "cam1", at, at - timedelta(seconds=5), True), snapshot=jpeg)
                bus.publish(EventOpened("cam1", event_id, "motion", at, True, jpeg))
            await _until_stored(engine, count)
            say(f"drain: {count} alerts queued while the endpoint is down; bringing it back")
            await rx.up()
            back = time.time()
            await rx.wait(lambda: len(rx.arrivals) >= count, 10 * TARGET_DRAIN_S)
            await asyncio.sleep(1.0)  # a duplicate would show up now
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.dispose()
        drained = list(rx.arrivals)
        baseline = sum(await bare_posts(rx.url, count, jpeg))
        await rx.down()
    walls = [a.wall for a in drained]
    ids = [a.doc["id"] for a in drained]
    occurred = [a.doc["occurred_utc"] for a in drained]
    return Drain(
        count=len(set(ids)),
        back_to_last=max(walls) - back if walls else float("nan"),
        first_to_last=max(walls) - min(walls) if walls else float("nan"),
        baseline=baseline,
        duplicates=len(ids) - len(set(ids)),
        newest_first=occurred == sorted(occurred, reverse=True),
    )


async def _until_stored(engine: Any, count: int) -> None:
    from sqlalchemy import func, select

    from appliance.storage.models_alerts import AlertRow

    sessions = make_sessionmaker(engine)
    while True:
        async with sessions() as session:
            if (await session.scalar(select(func.count()).select_from(AlertRow))) >= count:
                return
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------ report ---


def row(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"  {name:<27} {'-':>6} {'-':>6} {'-':>6}"
    return f"  {name:<27} {percentile(values, 50):>6.3f} {percentile(values, 95):>6.3f} {max(values):>6.3f}"


def report_latency(lat: Latency, cameras: int) -> None:
    print()
    print(f"alert latency: {len(lat.onset_alert)} snapshot alerts of {lat.entries} shopper entries "
          f"({cameras} simulated cameras, scene {SCENE}, missed {lat.missed})")  # fmt: skip
    print(f"  {'seconds':<27} {'p50':>6} {'p95':>6} {'max':>6}")
    print(row("onset -> alert received", lat.onset_alert))
    print(row("onset -> event opened", lat.onset_event))
    print(row("event opened -> alert", lat.event_alert))
    print(row("bare signed POST (baseline)", lat.baseline))
    if lat.event_alert and lat.baseline:
        ratio = percentile(lat.event_alert, 50) / percentile(lat.baseline, 50)
        print(f"  alert side / bare POST (p50): {ratio:.1f}x")
    p95 = percentile(lat.onset_alert, 95) if lat.onset_alert else float("nan")
    good = p95 <= TARGET_P95_S and len(lat.onset_alert) >= 50 and lat.missed == 0
    print(f"  {'PASS' if good else 'MISS'} onset -> snapshot alert p95 {p95:.2f} s <= {TARGET_P95_S} s over "
          f">= 50 events ({len(lat.onset_alert)}, missed {lat.missed})")  # fmt: skip
    for note in lat.notes:
        print(f"  note: {note}")


def report_drain(drain: Drain) -> None:
    print()
    print(f"drain after an outage: {drain.count} alerts, {drain.duplicates} delivered twice, "
          f"newest first: {'yes' if drain.newest_first else 'NO'}")  # fmt: skip
    rate = drain.count / drain.back_to_last
    print(f"  endpoint back -> last alert   {drain.back_to_last:6.2f} s ({rate:.0f} alerts/s)")
    print(f"  first -> last alert           {drain.first_to_last:6.2f} s")
    ratio = drain.first_to_last / drain.baseline
    print(f"  bare client, same POSTs       {drain.baseline:6.2f} s (baseline); ratio {ratio:.2f}x")
    good = drain.back_to_last <= TARGET_DRAIN_S and drain.duplicates == 0 and drain.count >= 1000
    print(f"  {'PASS' if good else 'MISS'} 1,000 queued alerts drained in {drain.back_to_last:.1f} s <= "
          f"{TARGET_DRAIN_S:.0f} s ({drain.count} delivered once each)")  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    # The dispatcher's retries during the simulated outage are expected: keep them off the report.
    logging.basicConfig(level=logging.ERROR)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {text}", flush=True)

    drain = await measure_drain(args.drain, say)
    lat = None if args.drain_only else await measure_latency(args.cameras, args.events, say)
    if lat is not None:
        report_latency(lat, args.cameras)
    report_drain(drain)
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cameras", type=int, default=10, help="simulated cameras (one shopper per 20 s each)")
    parser.add_argument("--events", type=int, default=50, help="snapshot alerts to measure")
    parser.add_argument("--drain", type=int, default=1000, help="alerts queued for the drain measurement")
    parser.add_argument("--drain-only", action="store_true", help="measure the drain alone (no cameras)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
