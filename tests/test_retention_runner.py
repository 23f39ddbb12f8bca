"""The retention runner on SQLite and PostgreSQL, against real footage files, a real index, a real
evidence chain and a real events table: what it deletes, in which order, what it never deletes,
and that `verify` still tells a retention gap from a file deleted by hand."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.bus import EventBus, Subscription
from appliance.cameras.clips import ClipInfo
from appliance.cameras.events import EndReason, EventEnded, event_id_for
from appliance.cameras.messages import DiskNearlyFull, RetentionShortened
from appliance.cameras.retention import DeletionReason, RetentionMode, RetentionPolicy
from appliance.cameras.retention_runner import (
    MAX_VANISHED_PER_SWEEP,
    FootageUnavailable,
    RetentionRunner,
    SweepReport,
)
from appliance.evidence.ledger import EvidenceLedger, LedgerConflict
from appliance.evidence.verify import FILE_MISSING
from appliance.storage.db import make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.footage import LocalFootageStore, clip_key, free_key
from appliance.storage.models import SEGMENT_COMPLETE, SEGMENT_MISSING, EvidenceRecord, Segment
from appliance.storage.segments import NewSegment, SegmentIndex
from appliance.storage.segments import SegmentInfo as IndexedSegment

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SEGMENT = timedelta(seconds=10)
KEEP_LONG = RetentionPolicy()  # 7 / 14 / 30 days: nothing recorded today ages out
SMALL_FS_BYTES = 4 * 1024 * 1024


@dataclass
class Rig:
    """One appliance's footage: files, index, evidence chain, events and bus, as the recorder leaves them."""

    store: LocalFootageStore
    sessions: async_sessionmaker[AsyncSession]
    index: SegmentIndex = field(init=False)
    ledger: EvidenceLedger = field(init=False)
    events: EventStore = field(init=False)
    bus: EventBus = field(default_factory=EventBus)

    def __post_init__(self) -> None:
        self.index = SegmentIndex(self.sessions)
        self.ledger = EvidenceLedger(self.sessions, Ed25519PrivateKey.generate())
        self.events = EventStore(self.sessions)

    def write(self, camera: str, start: datetime, size: int) -> tuple[str, str]:
        key = free_key(self.store, camera, start)
        payload = (f"{key} ".encode() * (size // len(key) + 1))[:size]
        with self.store.open_write(key) as f:
            f.write(payload)
        self.store.finalize(key)
        return key, hashlib.sha256(payload).hexdigest()

    async def record(
        self, camera: str, start: datetime, size: int = 1000, *, motion: bool = False, hold: bool = False
    ) -> str:
        """A finished segment: published file, complete index row, and its link in the chain."""
        key, sha256 = await asyncio.to_thread(self.write, camera, start, size)
        seconds = SEGMENT.total_seconds()
        await self.index.add_complete(
            IndexedSegment(camera, key, start, start + SEGMENT, seconds, size, sha256, "h264", 1280, 720)
        )
        if motion:
            await self.index.mark_motion(key, True)
        if hold:
            await self.index.set_legal_hold(key, True)
        await self.ledger.append(camera, "segment", key, sha256, size, start)
        return key

    async def recording(self, camera: str, start: datetime, size: int = 500) -> str:
        """The segment being written: a partial file and a "recording" row."""
        key = free_key(self.store, camera, start)
        with self.store.open_write(key) as f:
            f.write(b"\0" * size)
        await self.index.add(NewSegment(camera, key, start, "h264", 1280, 720))
        return key

    def publish(self, key: str, payload: bytes) -> str:
        with self.store.open_write(key) as f:
            f.write(payload)
        self.store.finalize(key)
        return hashlib.sha256(payload).hexdigest()

    async def clip(self, camera: str, start: datetime, end: datetime, size: int | None = None) -> tuple[str, str, str]:
        """An ended event with its clip (of `size` bytes) and H.264 rendition, recorded as
        ClipService records them: (event id, clip key, rendition key)."""
        await self.event(camera, start, end)
        event_id = event_id_for(camera, start)
        key = clip_key(camera, event_id, start)
        payload = f"clip {key}".encode() * 50
        payload = payload if size is None else (payload * (size // len(payload) + 1))[:size]
        sha256 = await asyncio.to_thread(self.publish, key, payload)
        first_frame = start - timedelta(seconds=5)
        await self.ledger.append(camera, "clip", key, sha256, len(payload), first_frame)
        await self.events.clip_ready(event_id, ClipInfo(key, sha256, len(payload), 20.0, first_frame, "hevc"))
        rendition = clip_key(camera, event_id, start, rendition=True)
        await asyncio.to_thread(self.publish, rendition, b"h264 copy" * 20)
        await self.events.rendition_ready(event_id, rendition)
        return event_id, key, rendition

    async def event(self, camera: str, start: datetime, end: datetime) -> None:
        await self.events.ended(
            EventEnded(
                event_id_for(camera, start),
                camera,
                start,
                end,
                start - timedelta(seconds=5),
                end + timedelta(seconds=10),
                EndReason.QUIET,
                False,
                start,
                0.5,
                (),
            )
        )

    def runner(
        self, policies: dict[str, RetentionPolicy], *, quota: int | None = None, min_free: int = 0, **kw: Any
    ) -> RetentionRunner:
        return RetentionRunner(
            self.store,
            self.index,
            self.ledger,
            self.bus,
            policies,
            quota,
            min_free,
            events=self.events,
            clock=lambda: NOW,
            **kw,
        )

    def exists(self, key: str) -> bool:
        return (self.store.root / key).is_file()

    async def deletion_records(self) -> list[tuple[str, str | None]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(EvidenceRecord.object_key, EvidenceRecord.reason)
                .where(EvidenceRecord.kind == "deletion")
                .order_by(EvidenceRecord.id)
            )
            return [(key, reason) for key, reason in rows]


@pytest.fixture
def rig(db_engine: AsyncEngine, tmp_path: Path) -> Rig:
    return Rig(LocalFootageStore(tmp_path / "footage"), make_sessionmaker(db_engine))


async def received(sub: Subscription[Any]) -> list[Any]:
    """Everything published so far (publish is synchronous: nothing is on its way)."""
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await asyncio.wait_for(sub.get(), timeout=0.01))
    return out


def deleted_keys(report: SweepReport) -> list[str]:
    return [str(d.segment_id) for d in report.deletions]


# ----------------------------------------------------------------------------------- age ---


async def test_age_expiry_deletes_the_expired_oldest_first_and_verify_tells_it_from_tampering(rig: Rig) -> None:
    policy = RetentionPolicy(continuous_days=1, motion_days=2, events_days=3)
    plain_5d = await rig.record("front", NOW - timedelta(days=5))
    plain_4d = await rig.record("front", NOW - timedelta(days=4))
    in_event = await rig.record("front", NOW - timedelta(days=2.5))
    await rig.event("front", NOW - timedelta(days=2.5) + timedelta(seconds=3), NOW - timedelta(days=2.5, seconds=-6))
    motion = await rig.record("front", NOW - timedelta(days=1.5), motion=True)
    plain_30h = await rig.record("front", NOW - timedelta(hours=30))
    recent = await rig.record("front", NOW - timedelta(hours=12))
    newest = await rig.record("front", NOW - timedelta(minutes=1))
    await rig.ledger.sign_heads(NOW - timedelta(seconds=30))

    report = await rig.runner({"front": policy}).sweep(NOW)

    assert deleted_keys(report) == [plain_5d, plain_4d, plain_30h]
    assert {d.reason for d in report.deletions} == {DeletionReason.AGE}
    assert report.freed_bytes == 3000 and not report.failures
    for key in (plain_5d, plain_4d, plain_30h):
        assert not rig.exists(key) and await rig.index.get(key) is None
    for key in (in_event, motion, recent, newest):
        assert rig.exists(key) and await rig.index.get(key) is not None
    assert await rig.deletion_records() == [(k, "retention:age") for k in (plain_5d, plain_4d, plain_30h)]

    # Retention's gaps are accounted for in the chain...
    verified = await rig.ledger.verify(rig.store)
    assert verified.ok, verified.cameras[0].problems
    assert verified.cameras[0].deletions == 3
    # ...while a file deleted by hand is reported, and only that one.
    (rig.store.root / motion).unlink()
    verified = await rig.ledger.verify(rig.store)
    (camera,) = verified.cameras
    assert camera.problem_count == 1 and camera.first_problem is not None
    assert (camera.first_problem.object_key, camera.first_problem.what) == (motion, FILE_MISSING)


async def test_a_file_deleted_by_hand_is_not_covered_up_as_a_retention_deletion(rig: Rig) -> None:
    gone = await rig.record("front", NOW - timedelta(days=20))
    await rig.record("front", NOW - timedelta(minutes=1))
    (rig.store.root / gone).unlink()

    report = await rig.runner({"front": KEEP_LONG}).sweep(NOW)

    assert report.deletions == [] and report.vanished == [gone]
    assert await rig.deletion_records() == []
    row = await rig.index.get(gone)
    assert row is not None and row.status == SEGMENT_MISSING
    verified = await rig.ledger.verify(rig.store)
    assert [(p.object_key, p.what) for p in verified.cameras[0].problems] == [(gone, FILE_MISSING)]


async def test_a_footage_disk_that_is_not_there_stops_the_sweep_instead_of_marking_everything_missing(
    rig: Rig,
) -> None:
    old = [await rig.record("front", NOW - timedelta(days=20) + i * SEGMENT) for i in range(MAX_VANISHED_PER_SWEEP + 2)]
    await rig.record("front", NOW - timedelta(minutes=1))
    rig.store.root.rename(rig.store.root.with_name("unmounted"))

    with pytest.raises(FootageUnavailable, match="footage disk is mounted"):
        await rig.runner({"front": KEEP_LONG}).sweep(NOW)

    statuses = await rig.index.statuses("front")
    assert sum(status == SEGMENT_MISSING for status in statuses.values()) == MAX_VANISHED_PER_SWEEP
    assert statuses[old[-1]] == SEGMENT_COMPLETE
    assert await rig.deletion_records() == []


# --------------------------------------------------------------------------------- clips ---


async def test_an_old_events_clip_goes_with_its_rendition_and_a_young_one_stays(rig: Rig) -> None:
    policy = RetentionPolicy(continuous_days=1, motion_days=2, events_days=3)
    old_start, young_start = NOW - timedelta(days=5), NOW - timedelta(days=2)
    await rig.record("door", old_start - timedelta(seconds=5))
    old_id, old_clip, old_rendition = await rig.clip("door", old_start, old_start + timedelta(seconds=3))
    await rig.record("door", young_start - timedelta(seconds=5))
    young_id, young_clip, young_rendition = await rig.clip("door", young_start, young_start + timedelta(seconds=3))
    await rig.record("door", NOW - timedelta(minutes=1))
    await rig.ledger.sign_heads(NOW - timedelta(seconds=30))

    report = await rig.runner({"door": policy}).sweep(NOW)

    assert report.clips == [old_clip] and not report.failures and not report.vanished
    assert not rig.exists(old_clip) and not rig.exists(old_rendition)
    assert rig.exists(young_clip) and rig.exists(young_rendition)
    assert (old_clip, "retention:age") in await rig.deletion_records()
    assert young_clip not in {key for key, _ in await rig.deletion_records()}
    old = await rig.events.get(old_id)
    assert old is not None and old.end_utc is not None  # the event itself stays
    assert (old.clip_key, old.clip_sha256, old.clip_size, old.clip_duration_s, old.rendition_key) == (None,) * 5
    young = await rig.events.get(young_id)
    assert young is not None and (young.clip_key, young.rendition_key) == (young_clip, young_rendition)
    verified = await rig.ledger.verify(rig.store)
    assert verified.ok, verified.cameras[0].problems

    # Once its event is old enough, the young clip goes too (the next age pass reads on from there).
    later = await rig.runner({"door": policy}).sweep(NOW + timedelta(days=1.5))
    assert later.clips == [young_clip] and not rig.exists(young_clip) and not rig.exists(young_rendition)
    assert (await rig.ledger.verify(rig.store)).ok


async def test_a_clip_cut_from_a_held_segment_is_kept_until_the_hold_is_released(rig: Rig) -> None:
    policy = RetentionPolicy(events_days=3)
    start = NOW - timedelta(days=40)
    held = await rig.record("till", start - timedelta(seconds=2), hold=True)
    event_id, key, rendition = await rig.clip("till", start, start + timedelta(seconds=4))
    await rig.record("till", NOW - timedelta(minutes=1))
    runner = rig.runner({"till": policy}, age_scan_interval_s=1)

    report = await runner.sweep(NOW)

    assert report.clips == [] and report.deletions == [] and not report.failures
    assert rig.exists(key) and rig.exists(rendition) and rig.exists(held)
    assert await rig.deletion_records() == []
    event = await rig.events.get(event_id)
    assert event is not None and event.clip_key == key

    # Released, the kept clip is looked at again by the same runner, though its events' days were read.
    await rig.index.set_legal_hold(held, False)
    report = await runner.sweep(NOW + timedelta(seconds=2))
    assert report.clips == [key] and not rig.exists(key) and not rig.exists(rendition)
    assert deleted_keys(report) == [held]
    assert (await rig.ledger.verify(rig.store)).ok


async def test_a_clip_deleted_by_hand_is_not_covered_up_as_a_retention_deletion(rig: Rig) -> None:
    start = NOW - timedelta(days=40)
    event_id, key, _ = await rig.clip("door", start, start + timedelta(seconds=4))
    (rig.store.root / key).unlink()

    report = await rig.runner({"door": KEEP_LONG}).sweep(NOW)

    assert report.clips == [] and report.vanished == [key]
    assert await rig.deletion_records() == []
    event = await rig.events.get(event_id)
    assert event is not None and event.clip_key == key
    verified = await rig.ledger.verify(rig.store)
    assert [(p.object_key, p.what) for p in verified.cameras[0].problems] == [(key, FILE_MISSING)]


# ------------------------------------------------------------------------------ pressure ---


async def test_quota_frees_the_oldest_across_cameras_and_never_the_newest_or_the_one_being_written(
    rig: Rig,
) -> None:
    t0 = NOW - timedelta(hours=1)
    # Days before the rest, in a window of its own: only `b`'s newest overall is protected, not
    # the newest of each window read.
    b_old = await rig.record("b", NOW - timedelta(days=3))
    keys: dict[str, list[str]] = {"a": [], "b": []}
    for i in range(6):
        keys["a"].append(await rig.record("a", t0 + 2 * i * SEGMENT))
        keys["b"].append(await rig.record("b", t0 + (2 * i + 1) * SEGMENT))
    policies = {"a": KEEP_LONG, "b": KEEP_LONG}
    sub = rig.bus.subscribe(RetentionShortened, DiskNearlyFull)
    used = rig.store.used_bytes()
    assert used == 13 * 1000

    report = await rig.runner(policies, quota=used - 4500).sweep(NOW)

    a, b = keys["a"], keys["b"]
    assert deleted_keys(report) == [b_old, a[0], b[0], a[1], b[1]]
    assert {d.reason for d in report.deletions} == {DeletionReason.QUOTA}
    assert report.pressure_bytes == 4500 and report.missing_bytes == 0
    assert rig.store.used_bytes() <= used - 4500
    assert await received(sub) == [
        RetentionShortened("b", t0 + 4 * SEGMENT, 3000, "quota"),
        RetentionShortened("a", t0 + 3 * SEGMENT, 2000, "quota"),
    ]
    assert {k for k, _ in await rig.deletion_records()} == set(deleted_keys(report))

    # A quota of nothing: all goes but each camera's newest and the segment being written.
    writing = await rig.recording("a", t0 + 12 * SEGMENT)
    report = await rig.runner(policies, quota=0).sweep(NOW)

    assert deleted_keys(report) == [a[2], b[2], a[3], b[3], a[4], b[4]]
    left = {a[5], b[5], writing}
    assert {k for k in (*a, *b, writing) if rig.store.exists(k)} == left
    assert report.missing_bytes == rig.store.used_bytes() == 2 * 1000 + 500
    *shortened, nearly_full = await received(sub)
    assert isinstance(nearly_full, DiskNearlyFull) and nearly_full.missing_bytes == report.missing_bytes
    assert [(m.camera_id, m.freed_bytes) for m in shortened] == [("a", 3000), ("b", 3000)]
    assert (await rig.ledger.verify(rig.store)).ok


async def test_clips_go_under_pressure_with_the_segments_oldest_first(rig: Rig) -> None:
    """Each clip takes its place by the footage it holds (from its clip_from): a segment, the clip
    of an event inside the next one, ... The evidence record comes before each file goes."""
    t0 = NOW - timedelta(hours=3)
    seg = [await rig.record("door", t0 + i * 3 * SEGMENT) for i in range(3)]  # at 0, 30, 60 s
    first = await rig.clip("door", t0 + 20 * timedelta(seconds=1), t0 + 23 * timedelta(seconds=1))  # from 15 s
    second = await rig.clip("door", t0 + 50 * timedelta(seconds=1), t0 + 53 * timedelta(seconds=1))  # from 45 s
    newest = await rig.record("door", NOW - timedelta(minutes=1))
    sizes = {k: rig.store.size(k) for k in (*seg, first[1], first[2], second[1], second[2])}
    sub = rig.bus.subscribe(RetentionShortened)
    used = rig.store.used_bytes()
    # Enough for the first segment, the first clip with its rendition and one byte more.
    needed = sizes[seg[0]] + sizes[first[1]] + sizes[first[2]] + 1

    report = await rig.runner({"door": KEEP_LONG}, quota=used - needed).sweep(NOW)

    assert [k for k, _ in await rig.deletion_records()] == [seg[0], first[1], seg[1]]
    assert {r for _, r in await rig.deletion_records()} == {"retention:quota"}
    assert report.clips == [first[1]] and deleted_keys(report) == [seg[0], seg[1]]
    assert report.clip_bytes == sizes[first[1]] + sizes[first[2]]
    assert not rig.exists(first[1]) and not rig.exists(first[2])
    assert all(rig.exists(k) for k in (seg[2], second[1], second[2], newest))
    event = await rig.events.get(first[0])
    assert event is not None and event.end_utc is not None and (event.clip_key, event.rendition_key) == (None, None)
    (shortened,) = await received(sub)
    assert shortened.camera_id == "door" and shortened.freed_bytes == report.freed_bytes + report.clip_bytes
    assert shortened.oldest_kept_utc == t0 + 4 * SEGMENT  # the second segment's end, after the clip's end
    assert (await rig.ledger.verify(rig.store)).ok

    # A quota of nothing: the rest goes too, but the newest segment stays.
    report = await rig.runner({"door": KEEP_LONG}, quota=0).sweep(NOW)
    assert [k for k, _ in (await rig.deletion_records())[3:]] == [second[1], seg[2]]
    assert rig.exists(newest) and report.missing_bytes == rig.store.used_bytes() == 1000
    assert (await rig.ledger.verify(rig.store)).ok


async def test_clips_older_than_every_segment_are_found_under_pressure(rig: Rig) -> None:
    # Their segments went long ago (by age, or under pressure); the clips of events_days remain.
    old = await rig.clip("door", NOW - timedelta(days=20), NOW - timedelta(days=20) + timedelta(seconds=3))
    recent = [await rig.record("door", NOW - timedelta(hours=1) + i * SEGMENT) for i in range(3)]

    report = await rig.runner({"door": KEEP_LONG}, quota=rig.store.used_bytes() - 1).sweep(NOW)

    assert report.clips == [old[1]] and report.deletions == []
    assert not rig.exists(old[1]) and not rig.exists(old[2]) and all(rig.exists(k) for k in recent)


async def test_a_clip_cut_from_a_held_segment_survives_pressure(rig: Rig) -> None:
    start = NOW - timedelta(days=2)
    held = await rig.record("till", start - timedelta(seconds=2), hold=True)
    event_id, key, rendition = await rig.clip("till", start, start + timedelta(seconds=4))
    plain = await rig.record("till", NOW - timedelta(hours=2))
    await rig.record("till", NOW - timedelta(minutes=1))

    report = await rig.runner({"till": KEEP_LONG}, quota=0).sweep(NOW)

    assert deleted_keys(report) == [plain] and report.clips == []
    assert rig.exists(held) and rig.exists(key) and rig.exists(rendition)
    assert report.missing_bytes == rig.store.used_bytes()  # the held footage and the newest are left
    assert key not in {k for k, _ in await rig.deletion_records()}
    event = await rig.events.get(event_id)
    assert event is not None and event.clip_key == key


async def test_a_clip_deletion_that_cannot_be_recorded_is_not_made(rig: Rig) -> None:
    rig.ledger = ContendedLedger(rig.sessions, Ed25519PrivateKey.generate())
    start = NOW - timedelta(days=2)
    event_id, key, rendition = await rig.clip("cash", start, start + timedelta(seconds=4))
    newer = await rig.record("cash", NOW - timedelta(hours=2))
    await rig.record("cash", NOW - timedelta(minutes=1))
    rig.ledger.contended = key

    report = await rig.runner({"cash": KEEP_LONG}, quota=0).sweep(NOW)

    assert report.clips == [] and [k for k, _ in report.failures] == [key]
    assert deleted_keys(report) == [newer]
    assert rig.exists(key) and rig.exists(rendition)
    event = await rig.events.get(event_id)
    assert event is not None and event.clip_key == key
    assert (await rig.ledger.verify(rig.store)).ok


class CountingStore(LocalFootageStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.walks = 0

    def used_bytes(self) -> int:
        self.walks += 1
        return super().used_bytes()


async def test_the_quota_is_tracked_between_walks_of_the_footage_directory(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "footage")
    rig = Rig(store, make_sessionmaker(db_engine))
    first = [await rig.record("a", NOW - timedelta(hours=1) + i * SEGMENT) for i in range(3)]
    runner = rig.runner({"a": RetentionPolicy(mode=RetentionMode.EVENTS)}, quota=3500)
    assert (await runner.sweep(NOW)).pressure_bytes == 0 and store.walks == 1

    # Recorded since the walk: counted from the index, without walking the directory again; the
    # two the mode discards (no events) count no more.
    later = [await rig.record("a", NOW + i * SEGMENT) for i in range(3)]
    report = await runner.sweep(NOW + timedelta(minutes=2))
    assert store.walks == 1
    assert report.pressure_bytes == 500 and deleted_keys(report) == [later[0], later[1], first[0]]
    assert (await runner.sweep(NOW + timedelta(minutes=3))).pressure_bytes == 0

    report = await runner.sweep(NOW + timedelta(minutes=20))  # time for a new walk
    assert store.walks == 2 and report.pressure_bytes == 0 and store.used_bytes() == 3000


async def test_legal_hold_survives_age_and_quota_pressure(rig: Rig) -> None:
    held = await rig.record("till", NOW - timedelta(days=40), hold=True)
    old = [await rig.record("till", NOW - timedelta(days=d)) for d in (10, 9)]
    newest = await rig.record("till", NOW - timedelta(hours=1))
    sub = rig.bus.subscribe(DiskNearlyFull)

    report = await rig.runner({"till": KEEP_LONG}, quota=0).sweep(NOW)

    assert deleted_keys(report) == old
    assert {d.reason for d in report.deletions} == {DeletionReason.AGE}
    assert rig.exists(held) and rig.exists(newest)
    row = await rig.index.get(held)
    assert row is not None and row.legal_hold and row.status == SEGMENT_COMPLETE
    assert held not in {k for k, _ in await rig.deletion_records()}
    assert report.missing_bytes == 2000
    (nearly_full,) = await received(sub)
    assert nearly_full.missing_bytes == 2000 and nearly_full.free_bytes > 0

    # Released, the held footage is ordinary old footage again.
    await rig.index.set_legal_hold(held, False)
    report = await rig.runner({"till": KEEP_LONG}).sweep(NOW)
    assert deleted_keys(report) == [held] and not rig.exists(held)


class ConsoleRacingIndex(SegmentIndex):
    """The real index, with a console user putting a segment under hold right after retention
    listed it (as a concurrent request would)."""

    hold_after_listing: str | None = None

    async def list_range(self, camera_id: str, start: datetime, end: datetime, **kw: Any) -> list[Segment]:
        rows = await super().list_range(camera_id, start, end, **kw)
        if self.hold_after_listing in {r.key for r in rows}:
            await self.set_legal_hold(self.hold_after_listing, True)
            self.hold_after_listing = None
        return rows


async def test_a_hold_set_while_the_sweep_runs_is_honoured(rig: Rig) -> None:
    rig.index = ConsoleRacingIndex(rig.sessions)
    old = [await rig.record("till", NOW - timedelta(days=d)) for d in (12, 11)]
    await rig.record("till", NOW - timedelta(minutes=1))
    rig.index.hold_after_listing = old[0]

    report = await rig.runner({"till": KEEP_LONG}).sweep(NOW)

    assert deleted_keys(report) == [old[1]]
    assert rig.exists(old[0]) and [k for k, _ in await rig.deletion_records()] == [old[1]]


class SmallDiskStore(LocalFootageStore):
    """A footage directory on a disk of `capacity` bytes, when a real small one cannot be mounted."""

    def __init__(self, root: Path, capacity: int) -> None:
        super().__init__(root)
        self.capacity = capacity

    def free_bytes(self) -> int:
        return self.capacity - self.used_bytes()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[LocalFootageStore]:
    """Footage on a real 4 MiB tmpfs (root), else on a directory that reports a 4 MiB disk."""
    root = tmp_path / "small"
    root.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES}", "tmpfs", str(root)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        yield SmallDiskStore(root, SMALL_FS_BYTES)
        return
    try:
        yield LocalFootageStore(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


async def test_minimum_free_space_on_a_small_disk_deletes_the_oldest_until_it_is_free(
    db_engine: AsyncEngine, small_disk: LocalFootageStore
) -> None:
    rig = Rig(small_disk, make_sessionmaker(db_engine))
    keys = [await rig.record("door", NOW - timedelta(hours=2) + i * SEGMENT, size=300_000) for i in range(10)]
    min_free = 2_000_000
    assert small_disk.free_bytes() < min_free
    sub = rig.bus.subscribe(RetentionShortened, DiskNearlyFull)

    report = await rig.runner({"door": KEEP_LONG}, min_free=min_free).sweep(NOW)

    deleted = deleted_keys(report)
    assert 0 < len(deleted) < len(keys) and deleted == keys[: len(deleted)]
    assert {d.reason for d in report.deletions} == {DeletionReason.FREE_SPACE}
    assert small_disk.free_bytes() >= min_free
    # No more than needed: one segment fewer would not have made the room.
    assert report.freed_bytes - 300_000 < report.pressure_bytes
    assert all(rig.exists(k) for k in keys[len(deleted) :])
    (message,) = await received(sub)
    assert message == RetentionShortened(
        "door", NOW - timedelta(hours=2) + len(deleted) * SEGMENT, report.freed_bytes, "free_space"
    )


async def test_on_a_small_disk_clips_go_with_the_oldest_segments_until_it_is_free(
    db_engine: AsyncEngine, small_disk: LocalFootageStore
) -> None:
    rig = Rig(small_disk, make_sessionmaker(db_engine))
    t0 = NOW - timedelta(hours=2)
    order: list[str] = []
    for i in range(5):
        order.append(await rig.record("door", t0 + 2 * i * SEGMENT, size=300_000))
        start = t0 + (2 * i + 1) * SEGMENT + timedelta(seconds=5)  # clip_from halfway through the next 10 s
        order.append((await rig.clip("door", start, start + timedelta(seconds=2), size=300_000))[1])
    newest = await rig.record("door", NOW - timedelta(minutes=1), size=300_000)
    min_free = 2_000_000
    assert small_disk.free_bytes() < min_free

    report = await rig.runner({"door": KEEP_LONG}, min_free=min_free).sweep(NOW)

    deleted = [k for k, _ in await rig.deletion_records()]
    assert 2 < len(deleted) < len(order) and deleted == order[: len(deleted)]
    assert report.clips and {r for _, r in await rig.deletion_records()} == {"retention:free_space"}
    assert small_disk.free_bytes() >= min_free
    assert all(rig.exists(k) for k in (*order[len(deleted) :], newest))
    assert (await rig.ledger.verify(rig.store)).ok


async def test_files_the_index_does_not_know_are_never_deleted_even_under_pressure(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A new or lost database: the archive is on disk, the index is empty.
    archive = [rig.write("back", NOW - timedelta(days=3) + i * SEGMENT, 1000)[0] for i in range(3)]
    sub = rig.bus.subscribe(DiskNearlyFull)
    runner = rig.runner({"back": KEEP_LONG}, quota=0)

    with caplog.at_level(logging.WARNING):
        report = await runner.sweep(NOW)

    assert report.deletions == [] and all(rig.exists(k) for k in archive)
    assert (report.unindexed_files, report.unindexed_bytes) == (3, 3000)
    assert "3 footage files" in caplog.text and "not in the index" in caplog.text
    (nearly_full,) = await received(sub)
    assert nearly_full.missing_bytes == 3000

    # Indexed footage goes under pressure; the stranger stays, counted.
    indexed = [await rig.record("back", NOW - timedelta(hours=1) + i * SEGMENT) for i in range(3)]
    report = await rig.runner({"back": KEEP_LONG}, quota=0).sweep(NOW)
    assert deleted_keys(report) == indexed[:2]
    assert all(rig.exists(k) for k in (*archive, indexed[2]))
    assert report.unindexed_files == 3 and report.missing_bytes == 4000


# ---------------------------------------------------------------------------------- modes ---


@pytest.mark.parametrize("mode", [RetentionMode.MOTION, RetentionMode.EVENTS])
async def test_mode_discards_segments_it_does_not_keep_once_their_decision_time_passed(
    rig: Rig, mode: RetentionMode
) -> None:
    t = NOW - timedelta(minutes=5)
    before_start = await rig.record("aisle", t - timedelta(hours=1))  # decided by an earlier run
    s = [await rig.record("aisle", t + i * SEGMENT, motion=(i == 1)) for i in range(7)]
    runner = rig.runner({"aisle": RetentionPolicy(mode=mode)})  # decision delay 30 s

    # At t+75 s the segments that ended by t+40 s are decided; s4 (ends t+50 s) waits for its
    # pre-roll and the delay: an event starting up to t+55 s may still claim it, and the
    # event's row may not be written yet.
    early = await runner.sweep(t + timedelta(seconds=75))
    discarded = [s[0], s[2], s[3]] if mode is RetentionMode.MOTION else [s[0], s[1], s[2], s[3]]
    assert deleted_keys(early) == discarded
    assert {d.reason for d in early.deletions} == {DeletionReason.MODE}

    # Motion from t+52 s to t+55 s, stored late: with 5 s pre-roll and 10 s post-roll it claims
    # s4, s5 and s6 (s6 is also the newest).
    await rig.event("aisle", t + timedelta(seconds=52), t + timedelta(seconds=55))
    late = await runner.sweep(t + timedelta(minutes=5))
    assert late.deletions == []
    kept = [k for k in s if k not in discarded]
    assert all(rig.exists(k) for k in (*kept, before_start))
    assert not any(rig.exists(k) for k in discarded)
    assert await rig.deletion_records() == [(k, "retention:mode") for k in discarded]
    assert (await rig.ledger.verify(rig.store)).ok


@pytest.mark.parametrize(
    ("policy", "ago", "reason"),
    [
        (KEEP_LONG, timedelta(days=40), DeletionReason.AGE),
        (RetentionPolicy(mode=RetentionMode.EVENTS), timedelta(minutes=10), DeletionReason.MODE),
    ],
)
async def test_the_last_footage_of_a_camera_that_went_offline_is_kept(
    rig: Rig, policy: RetentionPolicy, ago: timedelta, reason: DeletionReason
) -> None:
    before, last = [await rig.record("yard", NOW - ago + i * SEGMENT) for i in range(2)]

    report = await rig.runner({"yard": policy}).sweep(NOW)

    assert [(str(d.segment_id), d.reason) for d in report.deletions] == [(before, reason)]
    assert rig.exists(last)


async def test_a_camera_that_starts_recording_later_is_looked_after_at_once(rig: Rig) -> None:
    runner = rig.runner({"new": RetentionPolicy(mode=RetentionMode.EVENTS)})
    assert (await runner.sweep(NOW - timedelta(minutes=5))).deletions == []
    first, _ = [await rig.record("new", NOW - timedelta(minutes=4) + i * SEGMENT) for i in range(2)]

    assert deleted_keys(await runner.sweep(NOW)) == [first]


async def test_without_the_events_table_nothing_is_discarded_by_mode(rig: Rig) -> None:
    t = NOW - timedelta(minutes=5)
    keys = [await rig.record("aisle", t + i * SEGMENT) for i in range(3)]
    runner = RetentionRunner(
        rig.store,
        rig.index,
        rig.ledger,
        rig.bus,
        {"aisle": RetentionPolicy(mode=RetentionMode.EVENTS)},
        None,
        0,
        clock=lambda: NOW,
    )
    report = await runner.sweep(NOW)
    assert report.deletions == [] and all(rig.exists(k) for k in keys)


# ------------------------------------------------------------------------------ failures ---


class BrokenStore(LocalFootageStore):
    """The real store, where some files cannot be deleted (as with a read-only directory; root
    ignores permissions, so the fault is injected here)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.undeletable: set[str] = set()
        self.free_bytes_failures = 0

    def delete(self, key: str) -> None:
        if key in self.undeletable:
            raise PermissionError(errno.EACCES, "Permission denied", str(self.root / key))
        super().delete(key)

    def free_bytes(self) -> int:
        if self.free_bytes_failures:
            self.free_bytes_failures -= 1
            raise OSError(errno.EIO, "Input/output error", str(self.root))
        return super().free_bytes()


@pytest.fixture
def broken(db_engine: AsyncEngine, tmp_path: Path) -> Rig:
    return Rig(BrokenStore(tmp_path / "footage"), make_sessionmaker(db_engine))


async def test_a_file_that_cannot_be_deleted_is_logged_and_the_sweep_goes_on(
    broken: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    old = [await broken.record("cash", NOW - timedelta(days=d)) for d in (12, 11, 10)]
    await broken.record("cash", NOW - timedelta(minutes=1))
    assert isinstance(broken.store, BrokenStore)
    broken.store.undeletable.add(old[1])

    with caplog.at_level(logging.ERROR):
        report = await broken.runner({"cash": KEEP_LONG}).sweep(NOW)

    assert deleted_keys(report) == [old[0], old[2]]
    assert [(key, what.split(":")[0]) for key, what in report.failures] == [(old[1], "PermissionError")]
    (logged,) = [r for r in caplog.records if "could not delete a footage segment" in r.getMessage()]
    assert logged.__dict__["key"] == old[1] and "Permission denied" in logged.__dict__["error"]
    assert broken.exists(old[1]) and await broken.index.get(old[1]) is not None
    # The deletion was recorded first: a file too many, not an alarm.
    assert (await broken.ledger.verify(broken.store)).ok

    broken.store.undeletable.clear()
    retried = await broken.runner({"cash": KEEP_LONG}).sweep(NOW)
    assert deleted_keys(retried) == [old[1]] and not broken.exists(old[1])
    assert (await broken.ledger.verify(broken.store)).ok


class ContendedLedger(EvidenceLedger):
    """The real ledger, with another process appending to one camera's chain at the same moment."""

    contended: str | None = None

    async def record_deletion(
        self, camera_id: str, object_key: str, reason: str, deleted_at: datetime
    ) -> EvidenceRecord:
        if object_key == self.contended:
            raise LedgerConflict(f"another process appended to camera {camera_id!r}'s evidence chain")
        return await super().record_deletion(camera_id, object_key, reason, deleted_at)


async def test_a_deletion_that_cannot_be_recorded_is_not_made(rig: Rig) -> None:
    rig.ledger = ContendedLedger(rig.sessions, Ed25519PrivateKey.generate())
    old = [await rig.record("cash", NOW - timedelta(days=d)) for d in (12, 11)]
    await rig.record("cash", NOW - timedelta(minutes=1))
    rig.ledger.contended = old[0]

    report = await rig.runner({"cash": KEEP_LONG}).sweep(NOW)

    assert deleted_keys(report) == [old[1]] and [k for k, _ in report.failures] == [old[0]]
    assert rig.exists(old[0]) and await rig.index.get(old[0]) is not None
    assert (await rig.ledger.verify(rig.store)).ok


async def test_a_segment_missing_from_the_chain_is_deleted_with_its_deletion_recorded(rig: Rig) -> None:
    key, sha256 = rig.write("cash", NOW - timedelta(days=12), 1000)
    await rig.index.add_complete(
        IndexedSegment(
            "cash",
            key,
            NOW - timedelta(days=12),
            NOW - timedelta(days=12) + SEGMENT,
            10.0,
            1000,
            sha256,
            "h264",
            1280,
            720,
        )
    )
    await rig.record("cash", NOW - timedelta(minutes=1))

    report = await rig.runner({"cash": KEEP_LONG}).sweep(NOW)

    assert deleted_keys(report) == [key] and not rig.exists(key)
    assert await rig.deletion_records() == [(key, "retention:age")]
    assert (await rig.ledger.verify(rig.store)).ok


async def test_the_run_loop_survives_a_failing_sweep(broken: Rig, caplog: pytest.LogCaptureFixture) -> None:
    old = await broken.record("cash", NOW - timedelta(days=12))
    await broken.record("cash", NOW - timedelta(minutes=1))
    assert isinstance(broken.store, BrokenStore)
    broken.store.free_bytes_failures = 1
    runner = broken.runner({"cash": KEEP_LONG}, interval_s=0.02)

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(10):
                while broken.exists(old) or "retention sweep failed" not in caplog.text:
                    await asyncio.sleep(0.02)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert "Input/output error" in caplog.text
    assert await broken.index.get(old) is None


# ------------------------------------------------------------------------------- horizon ---


async def test_horizon_is_the_space_footage_may_use_over_the_measured_bytes_per_day(rig: Rig) -> None:
    for hours in range(1, 31):  # a day and more of camera a: its window is full
        await rig.record("a", NOW - timedelta(hours=hours))
    for hours in (2, 1):  # camera b was added two hours ago, at the same rate
        await rig.record("b", NOW - timedelta(hours=hours))
    runner = rig.runner({"a": KEEP_LONG, "b": KEEP_LONG, "c": KEEP_LONG}, quota=480_000)

    horizon = await runner.horizon()

    # 24,000 bytes a day each, 480,000 bytes of quota: 10 days.
    assert horizon["a"] == pytest.approx(10.0) and horizon["b"] == pytest.approx(10.0)
    assert horizon["c"] == math.inf


def test_bad_limits_are_refused(tmp_path: Path) -> None:
    args: list[Any] = [LocalFootageStore(tmp_path), None, None, None, {}]
    with pytest.raises(ValueError, match="quota_bytes"):
        RetentionRunner(*args, -1, 0)
    with pytest.raises(ValueError, match="min_free_bytes"):
        RetentionRunner(*args, None, -1)
    with pytest.raises(ValueError, match="interval_s"):
        RetentionRunner(*args, None, 0, interval_s=0)
