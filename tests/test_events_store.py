"""The events table (EventStore) on SQLite and PostgreSQL, and the peak snapshot/thumbnail JPEGs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cameras.clips import ClipInfo
from appliance.cameras.events import EndReason, EventEnded, EventStarted, PeakChanged, event_id_for
from appliance.cameras.motion import Box
from appliance.cameras.snapshots import SNAPSHOT_MAX_WIDTH, THUMBNAIL_WIDTH, jpeg_snapshot, thumbnail
from appliance.storage.db import make_sessionmaker
from appliance.storage.events import DuplicateEvent, EventStore, UnknownEvent, boxes_from_json

T0 = datetime(2026, 11, 27, 20, 15, 0, 400000, tzinfo=UTC)


def _started(camera: str, start: datetime, armed: bool = True) -> EventStarted:
    return EventStarted(event_id_for(camera, start), camera, start, start - timedelta(seconds=5), armed)


def _ended(s: EventStarted, seconds: float, reason: EndReason = EndReason.QUIET) -> EventEnded:
    end = s.start + timedelta(seconds=seconds)
    return EventEnded(
        s.event_id,
        s.camera_id,
        s.start,
        end,
        s.clip_from,
        end + timedelta(seconds=10),
        reason,
        s.armed,
        s.start + timedelta(seconds=1),
        0.42,
        ((10, 20, 30, 40), (1, 2, 3, 4)),
    )


@pytest.fixture
def store(db_engine: AsyncEngine) -> EventStore:
    return EventStore(make_sessionmaker(db_engine))


# --------------------------------------------------------------------------- EventStore ---


async def test_an_event_round_trip(store: EventStore) -> None:
    s = _started("kassa", T0)
    await store.started(s, snapshot=b"\xff\xd8first", thumbnail=b"\xff\xd8thumb")
    row = await store.get(s.event_id)
    assert row is not None
    assert (row.camera_id, row.kind, row.start_utc, row.clip_from, row.armed) == (
        "kassa",
        "motion",
        T0,
        s.clip_from,
        True,
    )
    assert (row.end_utc, row.clip_to, row.end_reason, row.clip_key) == (None, None, None, None)
    assert row.snapshot_jpeg == b"\xff\xd8first"

    peak_t = T0 + timedelta(seconds=2)
    await store.peak(PeakChanged(s.event_id, "kassa", peak_t, 0.7, ((5, 6, 7, 8),)), b"\xff\xd8peak", None)
    row = await store.get(s.event_id)
    assert row is not None and row.peak_at == peak_t and row.peak_score == 0.7
    assert boxes_from_json(row.peak_boxes) == [[5, 6, 7, 8]]
    assert (row.snapshot_jpeg, row.thumbnail_jpeg) == (b"\xff\xd8peak", b"\xff\xd8thumb")  # thumbnail kept

    e = _ended(s, 12.5)
    await store.ended(e)
    clip = ClipInfo("clips/kassa/2026-11-27/x.mp4", "ab" * 32, 123_456, 27.4, T0 - timedelta(seconds=5.2), "h264")
    await store.clip_ready(s.event_id, clip)
    await store.rendition_ready(s.event_id, "clips/kassa/2026-11-27/x.h264.mp4")
    row = await store.get(s.event_id)
    assert row is not None
    assert (row.end_utc, row.clip_to, row.end_reason) == (e.end, e.clip_to, "quiet")
    # The tracker's final peak is authoritative (the last PeakChanged may not have been stored).
    assert (row.peak_at, row.peak_score, boxes_from_json(row.peak_boxes)) == (
        e.peak_t,
        0.42,
        [[10, 20, 30, 40], [1, 2, 3, 4]],
    )
    assert (row.clip_key, row.clip_sha256, row.clip_size, row.clip_duration_s, row.rendition_key) == (
        clip.key,
        clip.sha256,
        123_456,
        27.4,
        "clips/kassa/2026-11-27/x.h264.mp4",
    )
    assert row.snapshot_jpeg == b"\xff\xd8peak"
    assert "peak" not in repr(row)  # no JPEG bytes in reprs (logs)


async def test_ended_alone_makes_a_complete_row(store: EventStore) -> None:
    # The database was down when the event started: the end still records it.
    s = _started("kassa", T0)
    await store.ended(_ended(s, 3), kind="tamper_covered")
    row = await store.get(s.event_id)
    assert row is not None and row.kind == "tamper_covered" and row.start_utc == T0
    assert row.end_utc == T0 + timedelta(seconds=3) and row.peak_score == 0.42 and row.snapshot_jpeg is None


async def test_listing_a_range_by_camera_and_kind(store: EventStore) -> None:
    a = _started("kassa", T0)
    b = _started("kassa", T0 + timedelta(minutes=10))
    c = _started("sklad", T0 + timedelta(minutes=5))
    d = _started("kassa", T0 + timedelta(hours=2))
    await store.started(a, snapshot=b"big")
    await store.ended(_ended(a, 30))
    await store.started(b)
    await store.started(c, kind="offline")
    await store.ended(_ended(c, 60), kind="offline")
    await store.started(d)

    window = (T0 + timedelta(seconds=20), T0 + timedelta(hours=1))
    listed = await store.list_range(None, *window)
    assert [e.id for e in listed] == [a.event_id, c.event_id, b.event_id]
    assert [e.id for e in await store.list_range("kassa", *window)] == [a.event_id, b.event_id]
    assert [e.id for e in await store.list_range(None, *window, kinds=["offline"])] == [c.event_id]
    # An event that ended before the window is not in it; one still open is.
    later = (T0 + timedelta(minutes=3), T0 + timedelta(minutes=4))
    assert [e.id for e in await store.list_range(None, *later)] == []
    assert [e.id for e in await store.list_range(None, T0 + timedelta(minutes=30), T0 + timedelta(minutes=31))] == [
        b.event_id
    ]
    # Lists leave the snapshot out (it would load MBs for a day); the thumbnail is there.
    with pytest.raises(Exception, match="snapshot_jpeg"):
        _ = listed[0].snapshot_jpeg
    assert listed[0].thumbnail_jpeg is None
    with pytest.raises(ValueError, match="not one of"):
        await store.list_range(None, *window, kinds=["burglary"])


async def test_a_health_event_is_closed_by_id(store: EventStore) -> None:
    # Offline and tamper events have no tracker (no EventEnded): the pipeline closes them by id,
    # which may be longer than a motion event's.
    start = _started("kassa-entrance-camera-number-001", T0)
    health = EventStarted(f"{start.event_id}-tamper_scene_change", start.camera_id, T0, T0, True)
    await store.started(health, kind="tamper_scene_change", snapshot=b"\xff\xd8moved")
    await store.close(health.event_id, T0 + timedelta(minutes=3), "cleared")
    row = await store.get(health.event_id)
    assert row is not None and (row.kind, row.end_utc, row.end_reason, row.clip_to) == (
        "tamper_scene_change",
        T0 + timedelta(minutes=3),
        "cleared",
        None,
    )
    with pytest.raises(UnknownEvent, match="no open event"):
        await store.close(health.event_id, T0 + timedelta(minutes=4), "cleared")  # closed already
    assert await store.open_events() == []


async def test_open_events_are_found_and_closed_after_a_crash(store: EventStore) -> None:
    a = _started("kassa", T0)
    b = _started("kassa", T0 + timedelta(minutes=1))
    c = _started("sklad", T0)
    for s in (a, b, c):
        await store.started(s)
    await store.ended(_ended(a, 10))
    assert {e.id for e in await store.open_events()} == {b.event_id, c.event_id}
    assert [e.id for e in await store.open_events("kassa")] == [b.event_id]

    crash = T0 + timedelta(seconds=30)  # before b started: its end is its start, never before it
    assert await store.close_open("kassa", crash, "restart") == [b.event_id]
    row = await store.get(b.event_id)
    assert row is not None and (row.end_utc, row.clip_to, row.end_reason) == (b.start, b.start, "restart")
    assert [e.id for e in await store.open_events()] == [c.event_id]
    assert await store.close_open("kassa", crash, "restart") == []


async def test_bad_writes_are_refused(store: EventStore, db_engine: AsyncEngine) -> None:
    s = _started("kassa", T0)
    await store.started(s)
    with pytest.raises(DuplicateEvent, match="stored already"):
        await store.started(s)
    with pytest.raises(ValueError, match="not one of"):
        await store.started(_started("kassa", T0 + timedelta(seconds=1)), kind="burglary")
    with pytest.raises(UnknownEvent):
        await store.peak(PeakChanged("kassa-nope", "kassa", T0, 1.0, ()), None, None)
    with pytest.raises(UnknownEvent):
        await store.clip_ready("kassa-nope", ClipInfo("k", "0" * 64, 1, 1.0, T0, "h264"))
    # The database itself refuses half a clip and an end before the start.
    for bad in (
        "UPDATE events SET clip_key = 'clips/x.mp4'",
        "UPDATE events SET end_utc = '2020-01-01 00:00:00+00:00'",
        "UPDATE events SET kind = 'burglary'",
    ):
        with pytest.raises(IntegrityError):
            async with db_engine.begin() as conn:
                await conn.execute(text(bad))


# ---------------------------------------------------------------------------- snapshots ---


def _scene(width: int, height: int) -> np.ndarray:
    """A smooth gradient with a grey square: compresses like a real picture, not like noise."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    bgr = np.stack(
        [
            np.broadcast_to(x, (height, width)),
            np.broadcast_to(y, (height, width)),
            np.full((height, width), 90, np.float32),
        ],
        axis=2,
    ).astype(np.uint8)
    bgr[height // 3 : height // 2, width // 3 : width // 2] = 128
    return bgr


def _decode(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_snapshot_is_a_jpeg_of_the_frame_with_the_boxes_drawn() -> None:
    frame = _scene(640, 360)
    plain = _decode(jpeg_snapshot(frame))
    assert plain.shape == frame.shape
    assert np.abs(plain.astype(int) - frame.astype(int)).mean() < 3
    boxed = _decode(jpeg_snapshot(frame, boxes=[Box(0.25, 0.25, 0.75, 0.75)]))
    # A red outline where the box's edges are, the picture unchanged inside it.
    edge = boxed[88:93, 320].astype(int)
    redness = edge[:, 2] - edge[:, :2].max(axis=1)
    assert redness.max() > 150
    plain_edge = plain[88:93, 320].astype(int)
    assert (plain_edge[:, 2] - plain_edge[:, :2].max(axis=1)).max() < 0
    inside = boxed[180, 320]
    assert np.abs(inside.astype(int) - plain[180, 320].astype(int)).max() < 10


def test_snapshot_accepts_decoder_layouts_and_bounds_its_size() -> None:
    frame = _scene(1920, 1080)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    from_yuv = _decode(jpeg_snapshot(yuv, pixel_format="yuv420p"))
    assert from_yuv.shape == (720, SNAPSHOT_MAX_WIDTH, 3)
    gray = _decode(jpeg_snapshot(yuv[:1080], pixel_format="gray"))
    assert gray.shape == (720, 1280, 3)
    data = jpeg_snapshot(frame)
    assert len(data) < 60_000  # "a few tens of KB"
    small = thumbnail(frame)
    assert _decode(small).shape == (180, THUMBNAIL_WIDTH, 3) and len(small) < len(data) / 4
    assert _decode(thumbnail(_scene(200, 100))).shape == (100, 200, 3)  # never enlarged


@pytest.mark.parametrize(
    ("frame", "pixel_format", "message"),
    [
        (np.zeros((10, 10), np.uint8), "bgr24", "H×W×3"),
        (np.zeros((10, 10, 3), np.uint8), "yuv420p", "2-D"),
        (np.zeros((10, 10), np.uint8), "yuv420p", "3/2"),
        (np.zeros((10, 10, 3), np.float32), "bgr24", "uint8"),
    ],
)
def test_frames_in_the_wrong_layout_are_refused(frame: np.ndarray, pixel_format: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jpeg_snapshot(frame, pixel_format=pixel_format)  # type: ignore[arg-type]


def test_a_jpeg_quality_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="quality"):
        jpeg_snapshot(np.zeros((10, 10, 3), np.uint8), 0)
