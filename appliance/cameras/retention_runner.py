"""The retention runner: the one component that deletes recorded footage.

The decisions are retention.py's pure functions; this module feeds them what the footage index
and the events table say, deletes what they pick, and keeps the evidence chain in step. Every
`interval_s` a sweep runs three passes:

1. mode: in the motion and events modes, each finished segment is kept or discarded once its
   decision time (plus `decision_delay_s`) has passed (`keep_segment`);
2. age: segments older than their class's keep days go (`expired`), and so do event clips (with
   their H.264 renditions) once their event ended more than `events_days` ago, unless a segment
   the clip was cut from is under a legal hold;
3. disk pressure: while the footage exceeds the quota or the disk has less than the minimum free
   space, the oldest unprotected footage across all cameras goes (`to_free`): segments, and the
   event clips (with their renditions) in the same order, by the footage they hold; a clip stays
   while a segment it was cut from is under a legal hold. The bus hears `RetentionShortened`
   (footage deleted before its keep days) and, when protected footage leaves too little to
   delete, `DiskNearlyFull`.

What is never deleted: a file the index does not know (a new or lost database must not wipe the
archive: such files are only counted and reported); a segment under a legal hold; the segment
being written and the newest finished segment of each camera (recording never stops, and the last
footage before a fault survives). Only cameras in `policies` are touched: give every camera whose
footage is on this box a policy, a removed one included.

Each deletion (segment or clip) is recorded in the camera's evidence chain *before* the file goes,
so a crash in between leaves a file too many, never a gap that `appliance footage verify` would
report as tampering. A file that is already gone when retention comes for it is not recorded as a
retention deletion (that would hide a deletion by hand): a segment's row becomes "missing", a
clip's event keeps its key, and verify reports it. A clip's H.264 rendition is a copy, not in the
chain: it goes with its clip, unrecorded.

Cost: the index is read in windows of `SCAN_WINDOW`, so memory stays flat whatever the archive.
Mode and pressure read only the few windows they need on each sweep; the age pass reads every
camera's archive older than its shortest keep days (1.5 s of CPU for 157,000 rows here) and so
runs every `age_scan_interval_s` only. With a quota, the directory walk is spaced out the same way
(`USED_REMEASURE_S`). Clips are found by the end time of their events, from where the last age pass
stopped; the first pass after a start reads the camera's whole events table, a window at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from appliance.bus import EventBus
from appliance.cameras.messages import DiskNearlyFull, RetentionShortened
from appliance.cameras.retention import (
    ClipSpan,
    Deletion,
    DeletionReason,
    EventSpan,
    RetentionMode,
    RetentionPolicy,
    SegmentInfo,
    decision_time,
    disk_pressure,
    expired,
    horizon_days,
    keep_segment,
    pressure_reason,
    to_free,
)
from appliance.evidence.ledger import EvidenceLedger, LedgerConflict, UnknownObject
from appliance.storage.events import EventStore
from appliance.storage.footage import CLIP_KEY_PATTERN, KEY_PATTERN, FootageStore, key_start
from appliance.storage.models import EVENT_KINDS, SEGMENT_COMPLETE, SEGMENT_RECORDING, Event, Segment, utcnow
from appliance.storage.segments import MAX_SEGMENT_SECONDS, SegmentIndex

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S: Final = 60.0
DECISION_DELAY_S: Final = 30.0
"""Waited after a segment's decision time before its mode decision: the analyser marks a segment's
motion after the segment is written, and the event tracker confirms an event `min_motion_s` after
its first motion frame; both must be in the database when the segment is judged."""
MODE_LOOKBACK_S: Final = 600.0
"""At the first sweep, segments that ended up to this long before it still get their mode decision:
the previous run had not decided them yet when it stopped. Older ones were decided (kept) by it, and
a mode changed across the restart does not reach back to them (footage already kept only ages out)."""
AGE_SCAN_INTERVAL_S: Final = 600.0
"""How often the age pass reads the archive: keep days are days, so deleting minutes late costs
nothing, while reading every kept segment every minute would cost seconds of CPU on a large one."""
MAX_AGE_DELETIONS_PER_SWEEP: Final = 2000
"""The age pass stops after this many deletions (seconds of work) and goes on at the next sweep, so
that a large catch-up (keep days shortened) never holds up the disk-pressure pass."""
SCAN_WINDOW: Final = timedelta(hours=6)
"""Segments are read this many hours at a time: about 2,200 rows of one camera at 10 s segments."""
MAX_SCAN_WINDOW: Final = timedelta(days=32)
"""An empty window doubles the next one, up to this: a camera off for months, or a legal hold a
year old, costs a few queries, not thousands."""
OLDEST_REFRESH_S: Final = 3600.0
"""How long the oldest footage time of a camera (read from all its keys) is reused. Scans start
there; a stale value only costs a window of rows that have since been deleted."""
USED_REMEASURE_S: Final = 900.0
"""With a quota, how often the footage directory is walked to measure its size. In between, the size
is the last walk plus the segments that started since, minus what retention deleted (short by at
most the segment each camera was writing during the walk). A walk costs about 7 µs per file here:
13 s for a month of eight cameras in 10 s segments, too much to repeat every minute."""
UNINDEXED_RECOUNT_S: Final = 3600.0
"""While the disk cannot be relieved, how often files the index does not know are counted again
(a walk of the whole footage directory)."""
MAX_VANISHED_PER_SWEEP: Final = 50
"""Indexed files found missing in one sweep before it stops: that many at once means the footage
disk is not mounted or the directory was wiped, and marking the whole index "missing" helps nobody
(reconciliation restores rows whose files come back, but rehashing an archive takes hours)."""
HORIZON_WINDOW: Final = timedelta(hours=24)
"""The recording rate for the disk horizon is measured over this much recent footage."""
RETAINING_EVENT_KINDS: Final = tuple(kind for kind in EVENT_KINDS if kind != "offline")
"""Events whose footage is kept: an offline event has no footage to keep."""
LEDGER_REASON_PREFIX: Final = "retention:"
CLIP_SPAN_SLACK: Final = timedelta(microseconds=1)
"""A clip's hold check reads the segments overlapping [clip_from, clip_to + this): its closed span, so
that a held segment starting exactly at clip_to (whose first frame the clip may hold) keeps the clip."""

# A key's time stamp is the segment's first guess at its start; the index may place the start up
# to a segment earlier, so scans derived from keys begin that much sooner.
_KEY_START_SLACK: Final = timedelta(seconds=MAX_SEGMENT_SECONDS)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_S: Final = 86400.0


class FootageUnavailable(RuntimeError):
    """Many indexed files are missing at once: the sweep stopped rather than mark them all missing."""


@dataclass
class SweepReport:
    """What one sweep did. `deletions` are in the order they happened (oldest first per pass)."""

    at: datetime
    deletions: list[Deletion] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(key, what went wrong) for segments that could not be deleted; retried at the next sweep."""
    vanished: list[str] = field(default_factory=list)
    """Indexed files already gone: marked "missing", not recorded as retention deletions. Clips
    already gone are listed too; their event rows keep the key, and verify reports them."""
    clips: list[str] = field(default_factory=list)
    """Keys of the event clips deleted, by age or under disk pressure (their renditions went with them)."""
    clip_bytes: int = 0
    """What the deleted clips and their renditions took."""
    pressure_bytes: int = 0
    """What the quota and the minimum free space asked to free when the pressure pass began."""
    missing_bytes: int = 0
    """What of that could not be freed: what is left is protected, unindexed or undeletable."""
    unindexed_files: int | None = None
    """Counted only when the disk cannot be relieved: files the index does not know (never deleted)."""
    unindexed_bytes: int | None = None

    @property
    def freed_bytes(self) -> int:
        return sum(d.size_bytes for d in self.deletions)

    def by_reason(self, reason: DeletionReason) -> list[Deletion]:
        return [d for d in self.deletions if d.reason is reason]


@dataclass
class _Shortened:
    freed_bytes: int = 0
    deleted_until: datetime = _EPOCH


@dataclass
class _Usage:
    """The last walk of the footage directory, and what retention freed since."""

    at: datetime
    walked_bytes: int
    freed_bytes: int = 0


@dataclass
class _Window:
    """The footage of one scan window: segments, and clips by event id (with their event rows)."""

    segments: list[SegmentInfo]
    clips: dict[str, tuple[ClipSpan, Event]]


@dataclass(frozen=True)
class _Oldest:
    start: datetime
    read_at: datetime


class RetentionRunner:
    """Deletes footage by the cameras' retention policies and the disk limits (a supervised component)."""

    def __init__(
        self,
        store: FootageStore,
        index: SegmentIndex,
        ledger: EvidenceLedger,
        bus: EventBus,
        policies: Mapping[str, RetentionPolicy],
        quota_bytes: int | None,
        min_free_bytes: int,
        interval_s: float = DEFAULT_INTERVAL_S,
        events: EventStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        decision_delay_s: float = DECISION_DELAY_S,
        mode_lookback_s: float = MODE_LOOKBACK_S,
        age_scan_interval_s: float = AGE_SCAN_INTERVAL_S,
    ) -> None:
        if quota_bytes is not None and quota_bytes < 0:
            raise ValueError(f"quota_bytes is {quota_bytes}; give a size of zero or more, or None for no quota")
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes is {min_free_bytes}; it cannot be negative")
        for name, value in (("interval_s", interval_s), ("age_scan_interval_s", age_scan_interval_s)):
            if not value > 0:
                raise ValueError(f"{name} is {value}; retention needs a positive interval")
        for name, value in (("decision_delay_s", decision_delay_s), ("mode_lookback_s", mode_lookback_s)):
            if value < 0:
                raise ValueError(f"{name} is {value}; it must be zero or more seconds")
        self._store = store
        self._index = index
        self._ledger = ledger
        self._bus = bus
        self._policies = dict(policies)
        self._quota = quota_bytes
        self._min_free = min_free_bytes
        self._interval_s = interval_s
        self._events = events
        self._clock = clock
        self._decision_delay = timedelta(seconds=decision_delay_s)
        self._mode_lookback = timedelta(seconds=mode_lookback_s)
        self._age_scan_interval = timedelta(seconds=age_scan_interval_s)
        self._lock = asyncio.Lock()
        self._mode_floor: dict[str, datetime] = {}
        self._oldest: dict[str, _Oldest] = {}
        self._next_age_scan: datetime | None = None
        self._clip_floor: dict[str, datetime] = {}
        """Per camera: clips of events that ended before this were dealt with (or are in _clips_kept)."""
        self._clips_kept: dict[str, set[str]] = {}
        """Per camera: ids of events whose old clip was kept (legal hold, or failed): looked at again."""
        self._unindexed: tuple[datetime, int, int] | None = None
        self._usage: _Usage | None = None
        if events is None and self._policies:
            log.warning(
                "retention runs without the events table: all footage is treated as event footage "
                "(never discarded by the mode, kept for events_days); pass the EventStore"
            )

    # ----------------------------------------------------------------------------- running ---

    async def run(self) -> None:
        """Sweep every `interval_s` until cancelled; a failed sweep is logged and the next one runs."""
        while True:
            try:
                await self.sweep(self._clock())
            except Exception:
                log.exception("retention sweep failed; retrying in %.0f s", self._interval_s)
            await asyncio.sleep(self._interval_s)

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """One pass of mode decisions, age expiry and disk pressure at `now` (default: the clock)."""
        now = self._clock() if now is None else now
        async with self._lock:
            report = SweepReport(now)
            oldest: dict[str, datetime] = {}
            newest: dict[str, SegmentInfo] = {}
            for camera in self._policies:
                start = await self._oldest_start(camera, now)
                if start is None:
                    continue  # nothing indexed
                oldest[camera] = start
                found = await self._newest_finished(camera, start, now)
                if found is not None:
                    newest[camera] = found
            for camera in oldest:
                await self._decide_modes(camera, now, newest.get(camera), report)
            if self._next_age_scan is None or now >= self._next_age_scan:
                done = await self._expire(oldest, newest, now, report)
                self._next_age_scan = now + self._age_scan_interval if done else now
            await self._relieve_pressure(oldest, newest, now, report)
            if report.deletions or report.clips or report.failures or report.vanished:
                log.info(
                    "retention sweep: %d segments deleted (%.1f MiB), %d clips deleted (%.1f MiB), %d failed, "
                    "%d vanished",
                    len(report.deletions),
                    report.freed_bytes / 2**20,
                    len(report.clips),
                    report.clip_bytes / 2**20,
                    len(report.failures),
                    len(report.vanished),
                    extra={"reasons": sorted({d.reason.value for d in report.deletions})},
                )
            return report

    async def horizon(self, now: datetime | None = None) -> dict[str, float]:
        """Days of footage the disk holds at the recording rate of the last 24 h, per camera.

        Oldest-first deletion across cameras gives every camera the same horizon: the space footage
        may use (the quota, or used plus free space minus the minimum free space, whichever is
        smaller) over all cameras' bytes per day. A camera that recorded nothing lately gets
        infinity. A camera's rate counts from its first segment in the window, so a new camera or
        one with gaps is measured at its rate while recording (a conservative, shorter horizon).
        """
        now = self._clock() if now is None else now
        free = await asyncio.to_thread(self._store.free_bytes)
        used = await self._used_bytes(now)
        budget = max(0, used + free - self._min_free)
        if self._quota is not None:
            budget = min(budget, self._quota)
        rates: dict[str, float] = {}
        window_start = now - HORIZON_WINDOW
        for camera in self._policies:
            rows = [r for r in await self._index.list_range(camera, window_start, now) if r.status == SEGMENT_COMPLETE]
            first = max(min((r.start_utc for r in rows), default=now), window_start)
            span_days = (now - first).total_seconds() / _DAY_S
            rates[camera] = sum(r.size_bytes or 0 for r in rows) / span_days if span_days > 0 else 0.0
        days = horizon_days(budget, sum(rates.values()))
        return {camera: days if rate > 0 else math.inf for camera, rate in rates.items()}

    # -------------------------------------------------------------------------- the passes ---

    async def _decide_modes(self, camera: str, now: datetime, newest: SegmentInfo | None, report: SweepReport) -> None:
        policy = self._policies[camera]
        if policy.mode is RetentionMode.CONTINUOUS:
            return
        floor = self._mode_floor.setdefault(camera, now - self._mode_lookback)
        segments = [
            _info(r, now) for r in await self._index.list_range(camera, floor, now) if r.status == SEGMENT_COMPLETE
        ]
        due = [
            s
            for s in segments
            if decision_time(s, policy) + self._decision_delay <= now and (newest is None or s.id != newest.id)
        ]
        due_ids = {s.id for s in due}
        undecided = [s for s in segments if s.id not in due_ids]
        if due:
            spans = await self._event_spans(camera, due, policy)
            for segment in due:
                if not keep_segment(segment, spans, policy) and not await self._delete(
                    segment, DeletionReason.MODE, now, report
                ):
                    undecided.append(segment)  # failed or changed meanwhile: judged again next time
        # The next sweep reads from the earliest segment still to judge; decided ones before it
        # are not read again.
        if undecided:
            self._mode_floor[camera] = min(s.start for s in undecided)
        elif segments:
            self._mode_floor[camera] = max(s.end for s in segments)

    async def _expire(
        self, oldest: Mapping[str, datetime], newest: Mapping[str, SegmentInfo], now: datetime, report: SweepReport
    ) -> bool:
        """The age pass; False when it stopped at MAX_AGE_DELETIONS_PER_SWEEP (to go on next sweep)."""
        budget = MAX_AGE_DELETIONS_PER_SWEEP
        for camera, start in oldest.items():
            policy = self._policies[camera]
            shortest = min(policy.continuous_days, policy.motion_days, policy.events_days)
            keep_newest = {newest[camera].id} if camera in newest else set()
            cutoff = now - timedelta(days=shortest)  # nothing younger can have expired
            async with contextlib.aclosing(self._chunks([camera], start, cutoff, now)) as chunks:
                async for chunk in chunks:
                    candidates = [s for s in chunk.segments if s.id not in keep_newest]
                    spans = await self._event_spans(camera, candidates, policy)
                    for segment in expired(candidates, spans, policy, now):
                        if budget == 0:
                            return False
                        budget -= 1
                        await self._delete(segment, DeletionReason.AGE, now, report)
        if self._events is None:
            return True
        # Every camera with a policy: clips outlive segments deleted under disk pressure.
        for camera in self._policies:
            left = await self._expire_clips(self._events, camera, now, report, budget)
            if left is None:
                return False
            budget = left
        return True

    async def _expire_clips(
        self, events: EventStore, camera: str, now: datetime, report: SweepReport, budget: int
    ) -> int | None:
        """Delete the camera's clips whose events ended over events_days ago; the deletion budget
        left, or None when it ran out (the rest waits for the next sweep)."""
        cutoff = now - timedelta(days=self._policies[camera].events_days)
        kept = self._clips_kept.setdefault(camera, set())
        retry = sorted(kept)
        kept.clear()
        for event_id in retry:
            event = await events.get(event_id)
            if event is None or event.clip_key is None:
                continue
            if budget == 0:
                kept.update(retry)  # those not looked at yet are still to do (done ones are skipped then)
                return None
            budget -= 1
            if await self._delete_clip(events, event, DeletionReason.AGE, now, report) is None:
                kept.add(event.id)
        if camera not in self._clip_floor:
            # Start at the oldest clip rather than walking every window since 1970.
            first = await events.oldest_clip_end(camera)
            if first is None:
                return budget
            self._clip_floor[camera] = first
        w0, width = self._clip_floor[camera], SCAN_WINDOW
        while w0 < cutoff:
            w1 = min(w0 + width, cutoff)
            # Each event is read in the window its end falls in (a window lists all it overlaps).
            ending = [
                e for e in await events.list_range(camera, w0, w1) if e.end_utc is not None and w0 <= e.end_utc < w1
            ]
            for event in ending:
                if event.clip_key is None or event.id in kept:
                    continue
                if budget == 0:
                    return None  # the floor stays at w0: this window is read again
                budget -= 1
                if await self._delete_clip(events, event, DeletionReason.AGE, now, report) is None:
                    kept.add(event.id)
            width = SCAN_WINDOW if ending else min(width * 2, MAX_SCAN_WINDOW)
            self._clip_floor[camera] = w0 = w1
        return budget

    async def _relieve_pressure(
        self, oldest: Mapping[str, datetime], newest: Mapping[str, SegmentInfo], now: datetime, report: SweepReport
    ) -> None:
        free = await asyncio.to_thread(self._store.free_bytes)
        used = await self._used_bytes(now) if self._quota is not None else 0
        needed = disk_pressure(used, self._quota, free, self._min_free)
        reason = pressure_reason(used, self._quota, free, self._min_free)
        if reason is None:
            return
        report.pressure_bytes = needed
        remaining = needed
        shortened: dict[str, _Shortened] = {}
        starts = dict(oldest)
        if self._events is not None:
            for camera in self._policies:
                first = await self._events.oldest_clip_from(camera)
                if first is not None:
                    starts[camera] = min(first, starts.get(camera, first))
        if starts:
            chunks = self._chunks(list(starts), min(starts.values()), now, now, clips=True)
            async with contextlib.aclosing(chunks) as windows:
                async for window in windows:
                    # Each camera's true newest joins every window, so that to_free protects it (and
                    # the clips reaching into it), not merely the newest segment of the window.
                    in_chunk = {s.id for s in window.segments}
                    plan = to_free(
                        [*window.segments, *(s for s in newest.values() if s.id not in in_chunk)],
                        remaining,
                        [span for span, _ in window.clips.values()],
                    )
                    for item in plan.in_order():
                        if isinstance(item, ClipSpan):
                            assert self._events is not None
                            event = window.clips[item.id][1]
                            freed = await self._delete_clip(self._events, event, reason, now, report)
                        else:
                            freed = item.size_bytes if await self._delete(item, reason, now, report) else None
                        if freed:
                            remaining -= freed
                            done = shortened.setdefault(item.camera_id, _Shortened())
                            done.freed_bytes += freed
                            done.deleted_until = max(done.deleted_until, item.end)
                    if remaining <= 0:
                        break
        for camera, done in shortened.items():
            self._bus.publish(RetentionShortened(camera, done.deleted_until, done.freed_bytes, reason.value))
        if remaining > 0:
            report.missing_bytes = remaining
            free_now = await asyncio.to_thread(self._store.free_bytes)
            await self._count_unindexed(now, report)
            log.error(
                "the footage disk cannot be relieved: %.1f MiB more would have to go, but what is left "
                "is under legal hold, being recorded, the newest of its camera, not in the index, or "
                "could not be deleted (see the errors before); release holds that are no longer "
                "needed, or give the footage a bigger disk",
                remaining / 2**20,
                extra={"free_bytes": free_now, "unindexed_files": report.unindexed_files},
            )
            self._bus.publish(DiskNearlyFull(free_now, remaining))

    # ------------------------------------------------------------------------- deleting one ---

    async def _delete(self, segment: SegmentInfo, reason: DeletionReason, now: datetime, report: SweepReport) -> bool:
        """Delete one segment: evidence record, file, index row. True when it is gone.

        Database errors propagate (they would fail every file alike); a file that cannot be
        deleted is logged and left for the next sweep.
        """
        key = str(segment.id)
        # Read again: a hold may have been set from the console since the segment was listed.
        row = await self._index.get(key)
        if row is None or row.legal_hold or row.status != SEGMENT_COMPLETE:
            return False
        try:
            await asyncio.to_thread(self._store.size, key)
        except FileNotFoundError:
            self._vanished(report, row.camera_id, key, "its row is marked missing")
            await self._index.mark_missing([key], now)
            return False
        except (OSError, ValueError) as exc:
            return self._failed(report, row.camera_id, key, exc)
        assert row.sha256 is not None and row.size_bytes is not None  # a complete row has both
        if not await self._record_and_delete(row.camera_id, key, row.sha256, row.size_bytes, reason, now, report):
            return False
        await self._index.delete(key)
        report.deletions.append(Deletion.of(segment, reason))
        if self._usage is not None and segment.start < self._usage.at:
            self._usage.freed_bytes += segment.size_bytes  # one started later is no longer counted anyway
        return True

    async def _delete_clip(
        self, events: EventStore, event: Event, reason: DeletionReason, now: datetime, report: SweepReport
    ) -> int | None:
        """Delete an event's clip: evidence record, file, rendition, the event's clip fields. The
        bytes freed (0 when the file had vanished: not retried, verify reports it); None when it
        stays for now (a segment it was cut from is held, or deleting failed)."""
        key, camera = event.clip_key, event.camera_id
        # A complete clip has both (the clip_is_complete constraint); an event with a clip has ended.
        assert key is not None and event.clip_sha256 is not None and event.clip_size is not None
        if await self._clip_held(event, now):
            return None
        try:
            size = await asyncio.to_thread(self._store.size, key)
        except FileNotFoundError:
            self._vanished(report, camera, key, "its event still names it")
            return 0
        except (OSError, ValueError) as exc:
            self._failed(report, camera, key, exc)
            return None
        if not await self._record_and_delete(camera, key, event.clip_sha256, event.clip_size, reason, now, report):
            return None
        if event.rendition_key is not None:
            size += await self._delete_rendition(camera, event.rendition_key, report)
        await events.clip_removed(event.id)
        report.clips.append(key)
        report.clip_bytes += size
        if self._usage is not None and (event.clip_to or now) < self._usage.at:
            self._usage.freed_bytes += size  # the clip was there at the last walk
        return size

    async def _clip_held(self, event: Event, now: datetime) -> bool:
        """Whether a segment the event's clip was cut from is under a legal hold."""
        clip_to = event.clip_to or event.end_utc or now
        sources = await self._index.list_range(
            event.camera_id, event.clip_from, clip_to + CLIP_SPAN_SLACK, include_missing=True
        )
        return any(s.legal_hold for s in sources)

    async def _delete_rendition(self, camera: str, key: str, report: SweepReport) -> int:
        """Delete a clip's H.264 rendition (a copy, not evidence: not in the chain); its size, 0 if it
        could not be deleted (logged: its clip is gone already, so it is not retried)."""
        try:
            size = await asyncio.to_thread(self._store.size, key)
            await asyncio.to_thread(self._store.delete, key)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            what = f"{type(exc).__name__}: {exc}"
            report.failures.append((key, what))
            log.error(
                "could not delete the H.264 rendition of a deleted clip; it is not retried: delete "
                "the file by hand once the footage directory's permissions or disk are fixed",
                extra={"camera": camera, "key": key, "error": what},
            )
            return 0
        return size

    async def _record_and_delete(
        self, camera: str, key: str, sha256: str, size: int, reason: DeletionReason, now: datetime, report: SweepReport
    ) -> bool:
        """Record the deletion in the chain, then delete the file; False (logged) if either failed."""
        try:
            await self._record_deletion(camera, key, sha256, size, reason, now)
        except LedgerConflict as exc:
            return self._failed(report, camera, key, exc)
        try:
            await asyncio.to_thread(self._store.delete, key)
        except FileNotFoundError:
            pass  # gone between the check and now; the deletion is recorded either way
        except (OSError, ValueError) as exc:
            return self._failed(report, camera, key, exc)
        return True

    async def _record_deletion(
        self, camera: str, key: str, sha256: str, size: int, reason: DeletionReason, now: datetime
    ) -> None:
        text = f"{LEDGER_REASON_PREFIX}{reason.value}"
        try:
            await self._ledger.record_deletion(camera, key, text, now)
        except UnknownObject:
            # The file never made it into the chain (its record failed when it was made): record
            # the deletion with the database's hash, so the chain still accounts for the file.
            log.warning(
                "footage had no evidence record; its deletion is recorded with the database's hash",
                extra={"camera": camera, "key": key},
            )
            await self._ledger.append(camera, "deletion", key, sha256, size, now, reason=text)

    @staticmethod
    def _vanished(report: SweepReport, camera: str, key: str, row_note: str) -> None:
        if len(report.vanished) >= MAX_VANISHED_PER_SWEEP:
            raise FootageUnavailable(
                f"{len(report.vanished) + 1} indexed footage files are missing from the footage store "
                f"(camera {camera!r} among them); retention stopped this sweep. Check that "
                "the footage disk is mounted, then run `appliance footage verify`"
            )
        report.vanished.append(key)
        log.warning(
            "footage file vanished before retention deleted it; %s and verify reports it "
            "(run `appliance footage verify`)",
            row_note,
            extra={"camera": camera, "key": key},
        )

    @staticmethod
    def _failed(report: SweepReport, camera: str, key: str, exc: Exception) -> bool:
        what = f"{type(exc).__name__}: {exc}"
        report.failures.append((key, what))
        log.error(
            "could not delete %s; retrying at the next sweep. Check the footage directory's permissions and the disk",
            "an event clip" if CLIP_KEY_PATTERN.fullmatch(key) else "a footage segment",
            extra={"camera": camera, "key": key, "error": what},
        )
        return False

    # ---------------------------------------------------------------------------- reading ---

    async def _used_bytes(self, now: datetime) -> int:
        """The footage directory's size: walked every USED_REMEASURE_S, estimated in between."""
        usage = self._usage
        if usage is None or not timedelta(0) <= now - usage.at < timedelta(seconds=USED_REMEASURE_S):
            walked = await asyncio.to_thread(self._store.used_bytes)
            self._usage = _Usage(now, walked)
            return walked
        added = 0
        for camera in self._policies:
            rows = await self._index.list_range(camera, usage.at, now)
            added += sum(r.size_bytes or 0 for r in rows if r.start_utc >= usage.at)
        return usage.walked_bytes + added - usage.freed_bytes

    async def _oldest_start(self, camera: str, now: datetime) -> datetime | None:
        """A time no indexed segment of the camera starts before (None: it has none)."""
        cached = self._oldest.get(camera)
        if cached is None or abs((now - cached.read_at).total_seconds()) >= OLDEST_REFRESH_S:
            # Within a camera, keys sort by time (the clash suffix only within one second).
            keys = [k for k in await self._index.known_keys(camera) if KEY_PATTERN.fullmatch(k)]
            if not keys:
                return None  # asked again next sweep: a new camera's footage must not wait an hour
            cached = self._oldest[camera] = _Oldest(key_start(min(keys)) - _KEY_START_SLACK, now)
        return cached.start

    async def _newest_finished(self, camera: str, oldest: datetime, now: datetime) -> SegmentInfo | None:
        row = await self._index.newest(camera)
        if row is None:
            return None
        if row.status == SEGMENT_COMPLETE:
            return _info(row, now)
        # The newest row is being written (or missing): the newest finished one is before it.
        end, width = row.start_utc, SCAN_WINDOW
        while end > oldest:
            rows = [
                r
                for r in await self._index.list_range(camera, end - width, end)
                if r.status == SEGMENT_COMPLETE and r.start_utc < row.start_utc
            ]
            if rows:
                return _info(max(rows, key=lambda r: (r.start_utc, r.id)), now)
            end, width = end - width, min(width * 2, MAX_SCAN_WINDOW)
        return None

    async def _chunks(
        self, cameras: Sequence[str], start: datetime, end: datetime, now: datetime, *, clips: bool = False
    ) -> AsyncGenerator[_Window, None]:
        """The cameras' footage starting in [start, end), oldest window first, each item once: the
        segments, and with `clips` the clips of the events that start in the window."""
        w0, width = start, SCAN_WINDOW
        while w0 < end:
            w1 = min(w0 + width, end)
            window = _Window([], {})
            for camera in cameras:
                rows = await self._index.list_range(camera, w0, w1)
                window.segments += [_info(r, now) for r in rows if w0 <= r.start_utc < w1]
                if clips and self._events is not None:
                    for event in await self._events.list_range(camera, w0, w1):
                        if event.clip_key is not None and w0 <= event.start_utc < w1:
                            window.clips[event.id] = (await self._clip_span(event, now), event)
            if window.segments or window.clips:
                width = SCAN_WINDOW
                yield window
            else:
                width = min(width * 2, MAX_SCAN_WINDOW)
            w0 = w1

    async def _clip_span(self, event: Event, now: datetime) -> ClipSpan:
        """What disk pressure needs to know of an event's clip."""
        assert event.clip_size is not None
        size = event.clip_size
        if event.rendition_key is not None:
            with contextlib.suppress(OSError, ValueError):
                size += await asyncio.to_thread(self._store.size, event.rendition_key)
        clip_to = event.clip_to or event.end_utc or now
        return ClipSpan(event.id, event.camera_id, event.clip_from, clip_to, size, await self._clip_held(event, now))

    async def _event_spans(
        self, camera: str, segments: Iterable[SegmentInfo], policy: RetentionPolicy
    ) -> list[EventSpan]:
        """The camera's events that can claim any of the segments (with the policy's rolls)."""
        segments = list(segments)
        if not segments:
            return []
        if self._events is None:
            # Nothing shows a segment to be outside every event: treat all footage as event footage
            # rather than delete what may be evidence.
            return [EventSpan(camera, _EPOCH)]
        start = min(s.start for s in segments) - timedelta(seconds=policy.post_roll_s)
        end = max(s.end for s in segments) + timedelta(seconds=policy.pre_roll_s)
        rows = await self._events.list_range(camera, start, end, kinds=RETAINING_EVENT_KINDS)
        return [EventSpan(camera, r.start_utc, r.end_utc) for r in rows]

    async def _count_unindexed(self, now: datetime, report: SweepReport) -> None:
        if self._unindexed is None or abs((now - self._unindexed[0]).total_seconds()) >= UNINDEXED_RECOUNT_S:
            files = size = 0
            for camera in self._policies:
                known = await self._index.known_keys(camera)
                camera_files, camera_size = await asyncio.to_thread(self._unindexed_files, camera, known)
                files, size = files + camera_files, size + camera_size
            self._unindexed = (now, files, size)
            if files:
                log.warning(
                    "%d footage files (%.1f MiB) are not in the index; retention never deletes them. "
                    "Reconciliation indexes them at the next start; move them away if they are not footage",
                    files,
                    size / 2**20,
                )
        _, report.unindexed_files, report.unindexed_bytes = self._unindexed

    def _unindexed_files(self, camera: str, known: set[str]) -> tuple[int, int]:
        files = size = 0
        for key in self._store.iter_keys(camera):
            if key not in known:
                try:
                    size += self._store.size(key)
                except FileNotFoundError:
                    continue
                files += 1
        return files, size


def _info(row: Segment, now: datetime) -> SegmentInfo:
    """The retention view of an index row; a segment being written ends now (as far as it is known)."""
    end = row.end_utc if row.end_utc is not None else now
    return SegmentInfo(
        id=row.key,
        camera_id=row.camera_id,
        start=row.start_utc,
        end=max(end, row.start_utc),
        size_bytes=row.size_bytes or 0,
        has_motion=row.has_motion,
        legal_hold=row.legal_hold,
        in_progress=row.status == SEGMENT_RECORDING,
    )
