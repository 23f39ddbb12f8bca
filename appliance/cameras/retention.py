"""Which recorded segments to keep, and which to delete when they age or the disk fills.

Pure decisions over what the index says; the caller deletes files and records each `Deletion`
in the evidence chain, so a gap left by retention can be told apart from tampering. Nothing here
looks at files: a file the index does not know is never a candidate, so a new or lost database
cannot wipe the archive (it only makes that footage invisible until it is re-indexed).

Three footage classes, from weakest to strongest:

* plain: a segment with no motion that overlaps no event window;
* motion: a segment whose motion flag is set (any motion the detector saw, even a blip too short
  to become an event);
* event: a segment overlapping an event window [event.start - pre_roll, event.end + post_roll]
  of the same camera (an event still running has no end and claims everything after its start).

The retention mode decides what is kept when a segment is finalised (`keep_segment`):

* continuous: every segment;
* motion: motion and event segments. The "± rolls" around motion come from the events, because
  every sustained motion becomes an event (armed or not); a blip keeps only its own segment;
* events: event segments only.

Each class then has its own age limit (`continuous_days`, `motion_days`, `events_days`); a
segment is kept for the longest limit among the classes it belongs to. Changing the mode never
deletes footage already kept: older footage simply ages out under these limits. Footage under a
legal hold and the segment being written are never deleted, by age or by disk pressure.

Event clips are copies cut from the segments; they age out with `events_days` (the runner does
that from the events table), and under disk pressure they go with the segments, oldest first by
the footage they hold (`to_free`), never when a segment they were cut from is under a legal hold.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

SegmentId = int | str


class RetentionMode(StrEnum):
    CONTINUOUS = "continuous"
    MOTION = "motion"
    EVENTS = "events"


class DeletionReason(StrEnum):
    AGE = "age"  # older than its class's keep days
    QUOTA = "quota"  # footage exceeded the disk quota
    FREE_SPACE = "free_space"  # the file system fell below the minimum free space
    MODE = "mode"  # discarded at finalisation: the camera's mode does not keep this footage


@dataclass(frozen=True)
class RetentionPolicy:
    """One camera's retention settings. Rolls default to the event tracker's pre/post-roll."""

    mode: RetentionMode = RetentionMode.CONTINUOUS
    continuous_days: float = 7.0
    """How long plain footage (no motion, no event) is kept; it is only recorded in continuous mode."""
    motion_days: float = 14.0
    """How long segments with motion are kept."""
    events_days: float = 30.0
    """How long segments inside an event window are kept."""
    pre_roll_s: float = 5.0
    post_roll_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("continuous_days", "motion_days", "events_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is {getattr(self, name)}; footage must be kept for more than zero days")
        for name in ("pre_roll_s", "post_roll_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be zero or more seconds")


@dataclass(frozen=True)
class SegmentInfo:
    """What the index knows about one recorded file. `end` of an in-progress segment is the time
    written so far. Times are time-zone aware UTC."""

    id: SegmentId
    camera_id: str
    start: datetime
    end: datetime
    size_bytes: int
    has_motion: bool = False
    legal_hold: bool = False
    in_progress: bool = False

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"segment {self.id}: start and end must be time-zone aware UTC datetimes")
        if self.end < self.start:
            raise ValueError(f"segment {self.id}: end {self.end.isoformat()} is before start {self.start.isoformat()}")
        if self.size_bytes < 0:
            raise ValueError(f"segment {self.id}: size_bytes is {self.size_bytes}; it cannot be negative")

    @property
    def protected(self) -> bool:
        """Never deleted by retention: held for an investigation, or still being written."""
        return self.legal_hold or self.in_progress


@dataclass(frozen=True)
class EventSpan:
    """An event's motion span; `end` None while it is still running."""

    camera_id: str
    start: datetime
    end: datetime | None = None


@dataclass(frozen=True)
class Deletion:
    """One segment deleted (or discarded) and why: the record the evidence chain keeps."""

    segment_id: SegmentId
    camera_id: str
    start: datetime
    end: datetime
    size_bytes: int
    reason: DeletionReason

    @classmethod
    def of(cls, segment: SegmentInfo, reason: DeletionReason) -> Deletion:
        return cls(segment.id, segment.camera_id, segment.start, segment.end, segment.size_bytes, reason)


@dataclass(frozen=True)
class ClipSpan:
    """An event clip as disk pressure sees it: the footage it holds, [start, end] (its clip_from
    and clip_to), and its size with its H.264 rendition's. Times are time-zone aware UTC."""

    id: str
    """The event's id."""
    camera_id: str
    start: datetime
    end: datetime
    size_bytes: int
    legal_hold: bool = False
    """A segment the clip was cut from is under a legal hold."""


@dataclass(frozen=True)
class FreePlan:
    """The segments and clips to delete to free space; `missing_bytes` > 0 when protected footage
    (legal holds, segments being written, each camera's newest and the clips reaching into it)
    left too little to delete. `in_order()` interleaves the two, oldest first."""

    segments: tuple[SegmentInfo, ...]
    freed_bytes: int
    missing_bytes: int
    clips: tuple[ClipSpan, ...] = ()

    def in_order(self) -> list[SegmentInfo | ClipSpan]:
        """What to delete, oldest footage first."""
        footage: list[SegmentInfo | ClipSpan] = [*self.segments, *self.clips]
        return sorted(footage, key=_age_order)


class _EventWindows:
    """Event windows per camera, merged and sorted, for overlap queries in O(log n)."""

    def __init__(self, events: Iterable[EventSpan], policy: RetentionPolicy) -> None:
        pre, post = timedelta(seconds=policy.pre_roll_s), timedelta(seconds=policy.post_roll_s)
        raw: dict[str, list[tuple[datetime, datetime]]] = {}
        for e in events:
            end = datetime.max.replace(tzinfo=e.start.tzinfo) if e.end is None else e.end + post
            raw.setdefault(e.camera_id, []).append((e.start - pre, end))
        self._starts: dict[str, list[datetime]] = {}
        self._ends: dict[str, list[datetime]] = {}
        for camera, windows in raw.items():
            starts, ends = self._starts.setdefault(camera, []), self._ends.setdefault(camera, [])
            for a, b in sorted(windows):
                if ends and a <= ends[-1]:
                    ends[-1] = max(ends[-1], b)
                else:
                    starts.append(a)
                    ends.append(b)

    def overlaps(self, segment: SegmentInfo) -> bool:
        """Closed window [a, b] against the segment's half-open [start, end): a segment that ends
        exactly where a window opens holds none of its footage; a zero-length window still claims
        the segment it falls in."""
        ends = self._ends.get(segment.camera_id)
        if not ends:
            return False
        i = bisect.bisect_left(ends, segment.start)  # first window not over before the segment
        if i == len(ends):
            return False
        a = self._starts[segment.camera_id][i]
        return a < segment.end or (a == segment.start == segment.end)


def _keep_days(segment: SegmentInfo, windows: _EventWindows, policy: RetentionPolicy) -> float:
    days = policy.continuous_days
    if segment.has_motion:
        days = max(days, policy.motion_days)
    if windows.overlaps(segment):
        days = max(days, policy.events_days)
    return days


def keep_segment(segment: SegmentInfo, events: Iterable[EventSpan], policy: RetentionPolicy) -> bool:
    """Keep (True) or discard (False, a `DeletionReason.MODE` deletion) a segment just finalised.

    Final only once no event that could still claim the segment can start: call it at
    `decision_time(segment, policy)` plus the event tracker's confirmation delay (min_motion_s),
    passing the running event with end None. A legal hold always keeps the segment.
    """
    if segment.legal_hold or policy.mode is RetentionMode.CONTINUOUS:
        return True
    if policy.mode is RetentionMode.MOTION and segment.has_motion:
        return True
    return _EventWindows((e for e in events if e.camera_id == segment.camera_id), policy).overlaps(segment)


def decision_time(segment: SegmentInfo, policy: RetentionPolicy) -> datetime:
    """The earliest moment an event starting later can no longer claim the segment as pre-roll."""
    return segment.end + timedelta(seconds=policy.pre_roll_s)


def keep_until(segment: SegmentInfo, events: Iterable[EventSpan], policy: RetentionPolicy) -> datetime | None:
    """When age retention may delete the segment; None while it is protected."""
    if segment.protected:
        return None
    windows = _EventWindows((e for e in events if e.camera_id == segment.camera_id), policy)
    return segment.end + timedelta(days=_keep_days(segment, windows, policy))


def expired(
    segments: Iterable[SegmentInfo], events: Iterable[EventSpan], policy: RetentionPolicy, now: datetime
) -> list[SegmentInfo]:
    """Segments older than their class's keep days (`DeletionReason.AGE`), oldest first.

    Age counts from the segment's end. Never returns a legal hold or a segment in progress.
    One policy for all segments passed: call it per camera when cameras differ.
    """
    windows = _EventWindows(events, policy)
    old = [s for s in segments if not s.protected and now - s.end > timedelta(days=_keep_days(s, windows, policy))]
    return sorted(old, key=_age_order)


def _age_order(item: SegmentInfo | ClipSpan) -> tuple[datetime, bool, datetime, str, str]:
    # Starting at the same time, a segment goes before a clip cut from it.
    return (item.start, isinstance(item, ClipSpan), item.end, item.camera_id, str(item.id))


def to_free(segments: Sequence[SegmentInfo], bytes_needed: int, clips: Sequence[ClipSpan] = ()) -> FreePlan:
    """The oldest footage across all cameras, segments and event clips in one order, whose sizes
    add up to `bytes_needed`.

    Skips legal holds (a clip's own: a segment it was cut from is held), segments in progress, the
    newest finished segment of each camera and the clips that reach into it, so recording never
    stops and the last footage before a fault always survives. If what is left is not enough, the
    plan frees what it can and reports the shortfall in `missing_bytes`.
    """
    if bytes_needed <= 0:
        return FreePlan((), 0, 0)
    newest: dict[str, SegmentInfo] = {}
    for s in segments:
        if not s.in_progress and (s.camera_id not in newest or _age_order(s) > _age_order(newest[s.camera_id])):
            newest[s.camera_id] = s
    keep_ids = {(s.camera_id, s.id) for s in newest.values()}
    chosen: list[SegmentInfo] = []
    chosen_clips: list[ClipSpan] = []
    freed = 0
    footage: list[SegmentInfo | ClipSpan] = [*segments, *clips]
    for item in sorted(footage, key=_age_order):
        if freed >= bytes_needed:
            break
        if isinstance(item, ClipSpan):
            last = newest.get(item.camera_id)
            if item.legal_hold or (last is not None and item.end > last.start):
                continue
            chosen_clips.append(item)
        elif item.protected or (item.camera_id, item.id) in keep_ids:
            continue
        else:
            chosen.append(item)
        freed += item.size_bytes
    return FreePlan(tuple(chosen), freed, max(0, bytes_needed - freed), tuple(chosen_clips))


def _deficits(used_bytes: int, quota_bytes: int | None, free_bytes: int, min_free_bytes: int) -> tuple[int, int]:
    _check_non_negative(used_bytes=used_bytes, free_bytes=free_bytes, min_free_bytes=min_free_bytes)
    if quota_bytes is None:
        return 0, min_free_bytes - free_bytes
    _check_non_negative(quota_bytes=quota_bytes)
    return used_bytes - quota_bytes, min_free_bytes - free_bytes


def disk_pressure(used_bytes: int, quota_bytes: int | None, free_bytes: int, min_free_bytes: int) -> int:
    """Bytes to delete now: the larger of the excess over the footage quota (None: no quota) and
    the shortfall below the file system's minimum free space; 0 when neither is exceeded."""
    return max(0, *_deficits(used_bytes, quota_bytes, free_bytes, min_free_bytes))


def pressure_reason(
    used_bytes: int, quota_bytes: int | None, free_bytes: int, min_free_bytes: int
) -> DeletionReason | None:
    """Which limit `disk_pressure` is enforcing (the larger deficit), for the deletion records."""
    over_quota, below_free = _deficits(used_bytes, quota_bytes, free_bytes, min_free_bytes)
    if max(over_quota, below_free) <= 0:
        return None
    return DeletionReason.QUOTA if over_quota >= below_free else DeletionReason.FREE_SPACE


def horizon_days(total_bytes_available: int, bytes_per_day_measured: float) -> float:
    """How many days of footage fit at the measured recording rate (infinite when nothing is
    recorded): the "disk horizon" to compare against the keep days."""
    _check_non_negative(total_bytes_available=total_bytes_available, bytes_per_day_measured=bytes_per_day_measured)
    if bytes_per_day_measured == 0:
        return math.inf
    return total_bytes_available / bytes_per_day_measured


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} is {value}; it cannot be negative")
