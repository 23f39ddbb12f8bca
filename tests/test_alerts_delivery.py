"""Alerts from bus messages to a real HTTP endpoint, as the daemon assembles them (build_alerts), on
SQLite and PostgreSQL: outages, refusals, Retry-After, restarts, the snapshot then the clip, rules."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.alerts.channel import Alert
from appliance.alerts.clipcut import ClipCutter
from appliance.alerts.composer import Composer, SnapshotCache
from appliance.alerts.outbox import Outbox
from appliance.cameras.clips import ClipInfo
from appliance.cameras.events import EndReason, EventEnded, EventStarted, event_id_for
from appliance.cameras.messages import (
    CameraOffline,
    ClipReady,
    DiskNearlyFull,
    EventOpened,
    RetentionShortened,
    TamperDetected,
)
from appliance.portal.notices import SmsBudgetReached
from appliance.storage.db import make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.footage import LocalFootageStore, clip_key
from appliance.storage.models_alerts import AlertRow
from tests.alerts_support import (
    WebhookReceiver,
    alerts_config,
    running_alerts,
    signed_correctly,
    until,
    webhook_channel,
    webhook_receiver,
)
from tests.recorder_support import encode_clip

JPEG = b"\xff\xd8\xff\xe0 snapshot"
Check = Callable[[], Awaitable[bool]]


def opened(camera: str, start: datetime, jpeg: bytes | None = JPEG, armed: bool = True) -> EventOpened:
    return EventOpened(camera, event_id_for(camera, start), "motion", start, armed, jpeg)


async def rows(engine: AsyncEngine) -> list[AlertRow]:
    async with make_sessionmaker(engine)() as session:
        return list(await session.scalars(select(AlertRow).order_by(AlertRow.id)))


def answered(rx: WebhookReceiver, status: int, count: int) -> Check:
    async def check() -> bool:
        return sum(1 for _, s, _ in rx.attempts if s == status) >= count

    return check


def stored(engine: AsyncEngine, count: int, state: str | None = None) -> Check:
    async def check() -> bool:
        return sum(1 for r in await rows(engine) if state is None or r.state == state) >= count

    return check


async def settle() -> None:
    """Long enough for a duplicate or a retry to show up, were one going to be sent."""
    await asyncio.sleep(0.5)


async def test_an_outage_then_every_alert_once_newest_first_with_its_age(
    tmp_path: Path, db_url: str, db_engine: AsyncEngine
) -> None:
    async with webhook_receiver() as rx:
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url, cooldown_s=0)], db_url=db_url)
        async with running_alerts(cfg, db_engine) as alerts:
            now = datetime.now(UTC)
            alerts.bus.publish(opened("kassa", now))
            await rx.wait_for(1)

            # The endpoint fails: first with 503s, then it is gone altogether (connections refused).
            rx.answer = (503, {})
            started = [now - timedelta(minutes=m) for m in (9, 7, 5, 3, 1)]
            for n, at in enumerate(started):
                alerts.bus.publish(opened("kassa" if n % 2 else "vhod", at))
            await until(answered(rx, 503, 3), 10, "the 503s")
            await rx.go_down()
            tried = len(rx.attempts)
            alerts.bus.publish(DiskNearlyFull(free_bytes=2 * 1024**3, missing_bytes=1024**3))
            await until(stored(db_engine, 7), 10, "the alerts stored during the outage")

            async def retried_while_down() -> bool:
                return any(r.attempts >= 3 and "cannot reach" in (r.last_error or "") for r in await rows(db_engine))

            await until(retried_while_down, 10, "retries while the endpoint is down")
            assert len(rx.attempts) == tried

            rx.answer = (200, {})
            await rx.come_back()
            got = await rx.wait_for(7)
            await settle()

    assert len(rx.received) == 7 and len({r.alert_id for r in rx.received}) == 7, "an alert came twice"
    assert all(signed_correctly(r) for r in rx.received)
    late = [r.doc for r in got[1:]]
    # Newest first: the disk notice (it happened last), then the events from the newest to the oldest.
    assert late[0]["kind"] == "disk_nearly_full"
    assert [d["occurred_utc"] for d in late[1:]] == [t.isoformat() for t in reversed(started)]
    assert "Доставлено с опозданием: это было 1 мин назад." in late[1]["body"]
    assert "Доставлено с опозданием: это было 9 мин назад." in late[-1]["body"]
    assert {r.state for r in await rows(db_engine)} == {"delivered"}
    assert max(r.attempts for r in await rows(db_engine)) > 2


async def test_a_refused_alert_stops_retrying_until_a_person_retries_it(
    tmp_path: Path, db_url: str, db_engine: AsyncEngine
) -> None:
    async with webhook_receiver() as rx:
        rx.answer = (401, {})
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url)], db_url=db_url)
        async with running_alerts(cfg, db_engine) as alerts:
            alerts.bus.publish(opened("kassa", datetime.now(UTC)))
            alerts.bus.publish(opened("vhod", datetime.now(UTC)))
            await until(stored(db_engine, 2, "failed"), 10, "the alerts to fail")
            await settle()
            assert len(rx.attempts) == 2  # each tried once, never again
            first, _ = await rows(db_engine)
            assert first.last_error == "HTTP 401 Unauthorized: Unauthorized: bad token"

            rx.answer = (200, {})  # the owner fixed the token
            assert await alerts.service.retry(alert_id=first.id) == 1
            await rx.wait_for(1)
            await settle()
        assert [r.alert_id for r in rx.received] == [str(first.id)]
        assert [r.state for r in await rows(db_engine)] == ["delivered", "failed"]


async def test_retry_after_is_honoured(tmp_path: Path, db_url: str, db_engine: AsyncEngine) -> None:
    async with webhook_receiver() as rx:
        rx.script = [(429, {"Retry-After": "1"})]
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url)], db_url=db_url)
        async with running_alerts(cfg, db_engine) as alerts:
            alerts.bus.publish(opened("kassa", datetime.now(UTC)))
            await rx.wait_for(1, timeout=15)
    (first, _, _), (second, status, _) = rx.attempts
    # The back-off alone would have tried again after 50 ms; the endpoint asked for a second.
    assert status == 200 and second - first >= 1.0


async def test_alerts_queued_when_the_dispatcher_stopped_are_delivered_after_a_restart(
    tmp_path: Path, db_url: str, db_engine: AsyncEngine
) -> None:
    async with webhook_receiver() as rx:
        await rx.go_down()
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url, cooldown_s=0)], db_url=db_url)
        now = datetime.now(UTC)
        async with running_alerts(cfg, db_engine) as alerts:
            for m in (3, 2, 1):
                alerts.bus.publish(opened("kassa", now - timedelta(minutes=m)))
            await until(stored(db_engine, 3), 10, "the alerts stored")
        # As if killed while sending: one row left claimed.
        claimed = await Outbox(make_sessionmaker(db_engine)).claim_next("hook", datetime.now(UTC))
        assert claimed is not None
        assert {r.state for r in await rows(db_engine)} == {"pending", "sending"}

        await rx.come_back()
        async with running_alerts(cfg, db_engine):
            await rx.wait_for(3)
            await settle()
    assert sorted(int(r.alert_id) for r in rx.received) == [r.id for r in await rows(db_engine)]
    assert {r.state for r in await rows(db_engine)} == {"delivered"}


async def test_the_snapshot_at_once_then_the_clip_cut_short(
    tmp_path: Path, db_url: str, db_engine: AsyncEngine
) -> None:
    events = EventStore(make_sessionmaker(db_engine))
    start = datetime.now(UTC) - timedelta(seconds=30)
    event_id = event_id_for("kassa", start)
    async with webhook_receiver() as rx:
        cfg = alerts_config(
            tmp_path,
            [webhook_channel(rx.url), webhook_channel(rx.url, "small", max_clip_bytes=64 * 1024, language="en")],
            db_url=db_url,
        )
        async with running_alerts(cfg, db_engine) as alerts:
            began = EventStarted(event_id, "kassa", start, start - timedelta(seconds=5), armed=True)
            await events.started(began, snapshot=b"\xff\xd8 first frame")
            alerts.bus.publish(opened("kassa", start, jpeg=b"\xff\xd8 in memory"))
            snapshots = list(await rx.wait_for(2))

            # The clip: 20 s of footage (pre-roll, motion, post-roll), in the footage store.
            key = clip_key("kassa", event_id, start)
            path = cfg.footage_dir / key
            path.parent.mkdir(parents=True)
            encode_clip(path, 20.0)
            end = start + timedelta(seconds=5)
            await events.ended(
                EventEnded(event_id, "kassa", start, end, began.clip_from, end + timedelta(seconds=10),
                           EndReason.QUIET, True, start, 0.5, ((0.1, 0.1, 0.3, 0.5),))
            )  # fmt: skip
            info = ClipInfo(key, "ab" * 32, path.stat().st_size, 20.0, began.clip_from, "h264")
            await events.clip_ready(event_id, info)
            alerts.bus.publish(ClipReady(event_id, "kassa", key, None, info.sha256))
            clips = (await rx.wait_for(4))[2:]

    assert {r.doc["part"] for r in snapshots} == {"snapshot"}
    # The first alert carries the JPEG the pipeline had in memory, not the stored one.
    assert {base64.b64decode(r.doc["snapshot_jpeg_base64"]) for r in snapshots} == {b"\xff\xd8 in memory"}
    full = next(d for d in clips if d.doc.get("clip")).doc
    small = next(d for d in clips if not d.doc.get("clip")).doc
    assert full["part"] == small["part"] == "clip" and full["title"] == "Видео: Касса"
    mp4 = base64.b64decode(full["clip"]["mp4_base64"])
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
    assert 8.0 <= seconds <= 10.05, seconds
    assert len(mp4) <= 8 * 1024 * 1024
    assert "larger than this channel accepts: watch it through the link" in small["body"]
    assert small["link"] == f"https://shop.example.org/events/{event_id}"
    assert base64.b64decode(small["snapshot_jpeg_base64"]) == b"\xff\xd8 first frame"


async def test_the_first_alert_names_the_zone_the_motion_started_in(
    tmp_path: Path, db_url: str, db_engine: AsyncEngine
) -> None:
    left, right = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]
    start = datetime.now(UTC)
    box_on_the_right = ((0.6, 0.2, 0.8, 0.6),)
    async with webhook_receiver() as rx:
        cfg = alerts_config(tmp_path, [webhook_channel(rx.url)], db_url=db_url, kassa_zones=[left, right])
        async with running_alerts(cfg, db_engine) as alerts:
            # "vhod" has no zones: nothing is said about them.
            for camera in ("kassa", "vhod"):
                event_id = event_id_for(camera, start)
                alerts.bus.publish(EventOpened(camera, event_id, "motion", start, True, JPEG, None, box_on_the_right))
            docs = {r.doc["camera"]["id"]: r.doc for r in await rx.wait_for(2)}
    assert "Движение в зоне 2." in docs["kassa"]["body"]
    assert "зоне" not in docs["vhod"]["body"]


async def test_rules_cooldown_pause_and_notices(tmp_path: Path, db_url: str, db_engine: AsyncEngine) -> None:
    async with webhook_receiver() as rx:
        cfg = alerts_config(
            tmp_path,
            [
                webhook_channel(rx.url, cooldown_s=60),
                webhook_channel(rx.url, "night", schedule="never", kinds=["motion"]),
            ],
            db_url=db_url,
        )
        async with running_alerts(cfg, db_engine) as alerts:
            t = datetime.now(UTC) - timedelta(seconds=50)
            alerts.bus.publish(opened("kassa", t))
            alerts.bus.publish(opened("kassa", t, armed=False))  # not armed: never an alert
            for s in (10, 20, 30):
                alerts.bus.publish(opened("kassa", t + timedelta(seconds=s)))
            await rx.wait_for(1)
            alerts.bus.publish(opened("kassa", t + timedelta(seconds=61)))  # after the cooldown
            await rx.wait_for(2)
            await alerts.service.pause(None, "anna")
            alerts.bus.publish(opened("vhod", t + timedelta(seconds=62)))
            alerts.bus.publish(CameraOffline("vhod", "vhod-offline", t))
            alerts.bus.publish(DiskNearlyFull(free_bytes=1, missing_bytes=2))  # not about a camera: it goes
            alerts.bus.publish(DiskNearlyFull(free_bytes=1, missing_bytes=2))  # debounced
            alerts.bus.publish(RetentionShortened("kassa", t, 10, "quota"))
            alerts.bus.publish(SmsBudgetReached(t.date(), 50, 50, t))
            await rx.wait_for(5)
            await alerts.service.resume()
            alerts.bus.publish(TamperDetected("vhod", "vhod-tamper", "tamper_covered", t, b"\xff\xd8 covered"))
            await rx.wait_for(6)
            await settle()
    docs = [r.doc for r in rx.received]
    assert [d["kind"] for d in docs[:2]] == ["motion", "motion"]
    assert "ещё 3 события" in docs[1]["body"]  # the burst, summarised in the next alert
    # Appliance notices go while camera alerts are paused.
    assert sorted(d["kind"] for d in docs[2:5]) == ["disk_nearly_full", "retention_shortened", "sms_budget_reached"]
    assert docs[5]["kind"] == "tamper_covered" and docs[5]["title"] == "Камера «Вход»: объектив закрыт"
    assert base64.b64decode(docs[5]["snapshot_jpeg_base64"]) == b"\xff\xd8 covered"
    assert len(docs) == 6
    held = {(r.channel_id, r.kind, r.last_error) for r in await rows(db_engine) if r.state == "suppressed"}
    assert ("hook", "motion", "cooldown") in held and ("hook", "motion", "paused") in held
    assert ("hook", "camera_offline", "paused") in held
    assert not {r for r in await rows(db_engine) if r.channel_id == "night" and r.kind == "motion"}


async def test_a_channel_that_takes_no_attachments_gets_the_link_and_no_clip_is_cut(
    tmp_path: Path, db_engine: AsyncEngine
) -> None:
    """MQTT and Web Push carry no video: cutting one for them would be work thrown away."""

    @dataclass
    class Limited:
        max_attachment_bytes: int
        id: str = "limited"

        async def send(self, alert: Alert) -> None: ...

        async def close(self) -> None: ...

    cfg = alerts_config(tmp_path, [webhook_channel("http://127.0.0.1:9/hook", language="en")])
    sessions = make_sessionmaker(db_engine)
    start = datetime.now(UTC) - timedelta(seconds=30)
    event_id = event_id_for("kassa", start)
    key = clip_key("kassa", event_id, start)
    (cfg.footage_dir / key).parent.mkdir(parents=True)
    encode_clip(cfg.footage_dir / key, 20.0)
    events = EventStore(sessions)
    await events.started(EventStarted(event_id, "kassa", start, start - timedelta(seconds=5), armed=True))
    await events.clip_ready(event_id, ClipInfo(key, "ab" * 32, 1, 20.0, start - timedelta(seconds=5), "h264"))
    cache = tmp_path / "cuts"
    composer = Composer(cfg, events, SnapshotCache(), ClipCutter(LocalFootageStore(cfg.footage_dir), cache))
    row = AlertRow(
        id=1, channel_id="limited", source=event_id, part="clip", kind="motion", camera_id="kassa",
        event_id=event_id, occurred_utc=start, payload="{}",
    )  # fmt: skip
    (settings,) = cfg.alerts.channels

    linked = await composer.compose(row, settings, Limited(0))
    assert linked.clip_mp4 is None and "The recording is ready: watch it through the link." in linked.body
    assert not cache.exists(), "a clip was cut for a channel that cannot carry it"

    attached = await composer.compose(row, settings, Limited(8 * 1024 * 1024))
    assert attached.clip_mp4 is not None and list(cache.glob("*.mp4"))
