"""Per-camera motion events: when one starts and ends, where its peak is, and whether it alerts.

Pure logic. Nothing here reads a clock, a file or a frame: the caller passes each analysed
frame's UTC timestamp, motion verdict, score and boxes to `EventTracker.update` and acts on the
returned actions (store the event, keep the frame of a `PeakChanged` for the snapshot and the
thumbnail, send the alert when an armed `EventStarted` arrives, cut the clip from
`clip_from` to `clip_to` out of the recorded segments).

The life of an event, with the default settings:

    quiet ──motion──▶ candidate ──motion held for min_motion_s──▶ active ──quiet > merge_gap_s──▶ ended
               ▲          │ a quiet frame or a stall                 │ motion again: same event
               └──────────┘                                          │ longer than max_event_s: split

`min_motion_s` is counted from the first frame of the detector's run of moving frames (`since`,
see `MotionResult.since`), not from the first frame the detector calls motion: the detector's
persistence and the event's confirmation overlap rather than add up, and an event's `start` is
the frame where the motion began. An event's `end` is its last motion frame; the clip adds the
pre-roll before (footage the recorder already holds, so frames before the trigger are in it) and
the post-roll after. The arming schedule only decides whether an event alerts: events and
recording happen at any hour, what is kept follows the camera's retention mode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

Box = tuple[float, float, float, float]
"""A motion box as (x0, y0, x1, y1) in frame fractions, so it can be drawn on any resolution."""

CLOCK_STEP_TOLERANCE_S = 2.0
"""A frame stamped at most this much earlier than the previous one is dropped as reordered or
as a small NTP correction. A larger step back means the wall clock was reset: the open event is
closed (reason `clock_jump`) and tracking restarts on the new timeline, rather than ignoring
every frame until the clock catches up again."""


@dataclass(frozen=True)
class EventSettings:
    """The tunables of the event state machine, one set per camera.

    `min_motion_s` = 0.25, the motion detector's default `persistence_s`: counted from the first
    frame of the detector's run, it adds nothing to the detector's confirmation (blobs in every
    frame for 0.25 s, about five frames of a 15 fps stream), so a person walking in is an event
    about half a second after entering. Raise it to alert only on motion that lasts.
    """

    min_motion_s: float = 0.25
    """Motion must be seen continuously this long (from the first frame of the detector's run to
    the current frame) before an event starts."""
    pre_roll_s: float = 5.0
    """Footage kept before the first motion frame (`clip_from` = start - pre_roll_s)."""
    post_roll_s: float = 10.0
    """Footage kept after the last motion frame (`clip_to` = end + post_roll_s). A camera that
    sends no frame at all for longer than this is offline: its open event ends at the last motion."""
    merge_gap_s: float = 10.0
    """Quiet time after the last motion before the event ends. Motion resuming within it continues
    the same event, so a burst of activity with pauses is one event and one alert, not many. Equal
    to the post-roll by default: motion inside the post-roll window extends the event."""
    max_event_s: float = 300.0
    """Longer activity is split into consecutive events of at most this length, each with its own
    peak and snapshot, so a clip stays short enough to review and export."""
    max_frame_gap_s: float = 2.0
    """Longest silence between two analysed frames that still counts as continuous observation
    while motion is building up; after a longer stall (decoder hiccup, reconnect) the
    `min_motion_s` count restarts, so two moving frames either side of a stall never make an event.
    Must exceed the frame interval of the slowest analysis rate (1 fps)."""

    def __post_init__(self) -> None:
        for name in ("min_motion_s", "pre_roll_s", "post_roll_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be zero or more seconds")
        for name in ("merge_gap_s", "max_event_s", "max_frame_gap_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be more than zero seconds")
        if self.max_event_s <= max(self.merge_gap_s, self.min_motion_s):
            raise ValueError(
                f"max_event_s ({self.max_event_s}) must be longer than merge_gap_s ({self.merge_gap_s}) "
                f"and min_motion_s ({self.min_motion_s}); raise max_event_s"
            )


# ------------------------------------------------------------------------- arming schedule ---

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALL_DAYS = frozenset(range(7))
_MINUTES_PER_DAY = 24 * 60
_WINDOW_RE = re.compile(r"^(?P<days>.*?)\s*(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$")
_SCHEDULE_HELP = (
    "write 'always', 'never' or windows such as 'mon-fri 20:00-08:00; sat,sun 00:00-24:00' "
    "(days: mon tue wed thu fri sat sun, lists with commas, ranges with '-'; no days means every day)"
)


def _minute_of_day(text: str, window: str, *, is_end: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        if not is_end:
            raise ValueError(f"arming window {window!r}: a window cannot start at 24:00; use 00:00")
        return _MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f"arming window {window!r}: {text!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_days(text: str, window: str) -> frozenset[int]:
    if not text:
        return _ALL_DAYS
    days: set[int] = set()
    for item in text.split(","):
        bounds = [part.strip() for part in item.split("-")]
        if len(bounds) > 2 or any(b not in _DAY_NAMES for b in bounds):
            raise ValueError(f"arming window {window!r}: unknown day {item.strip()!r}; {_SCHEDULE_HELP}")
        first, last = _DAY_NAMES.index(bounds[0]), _DAY_NAMES.index(bounds[-1])
        # A range may wrap over the weekend: "fri-mon" is fri, sat, sun, mon.
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    runs: list[tuple[int, int]] = []
    for day in sorted(days):
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return ",".join(_DAY_NAMES[a] if a == b else f"{_DAY_NAMES[a]}-{_DAY_NAMES[b]}" for a, b in runs)


@dataclass(frozen=True)
class ArmWindow:
    """Armed from `start` to `end` (minutes after local midnight, end up to 1440 = 24:00) on `days`
    (0 = Monday). When `end` <= `start` the window runs overnight and `days` name the evening it
    opens: mon-fri 20:00-08:00 covers Monday 20:00 to Tuesday 08:00 ... Friday 20:00 to Saturday 08:00."""

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.days <= _ALL_DAYS or not self.days:
            raise ValueError(f"arming window days {sorted(self.days)} must be a non-empty subset of 0..6 (0 = Monday)")
        if not (0 <= self.start < _MINUTES_PER_DAY and 0 <= self.end <= _MINUTES_PER_DAY):
            raise ValueError(f"arming window {self.start}-{self.end}: minutes must lie within 0..1440")
        if self.start == self.end:
            raise ValueError(f"arming window {self}: start and end are equal; write 00:00-24:00 for a whole day")

    def contains(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or ((weekday - 1) % 7 in self.days and minute < self.end)

    def __str__(self) -> str:
        return f"{_format_days(self.days)} {_format_minute(self.start)}-{_format_minute(self.end)}"


@dataclass(frozen=True)
class ArmSchedule:
    """A weekly timetable, in the store's local wall-clock time, of the hours when events alert.

    An empty schedule is never armed. Local time is wall-clock time: in a zone with daylight saving
    a 20:00 window opens at 20:00 local on both sides of the change.
    """

    windows: tuple[ArmWindow, ...]

    @classmethod
    def always(cls) -> ArmSchedule:
        return cls((ArmWindow(_ALL_DAYS, 0, _MINUTES_PER_DAY),))

    @classmethod
    def parse(cls, spec: str | Iterable[str]) -> ArmSchedule:
        """Read "always", "never", or windows like "mon-fri 20:00-08:00" separated by ';' (or given
        as a list). Raises ValueError naming the part that cannot be read."""
        parts = [spec] if isinstance(spec, str) else list(spec)
        windows = [w.strip().lower() for part in parts for w in part.split(";")]
        windows = [w for w in windows if w]
        if not windows:
            raise ValueError(f"the arming schedule is empty; {_SCHEDULE_HELP}")
        for keyword in ("always", "never"):
            if keyword in windows and len(windows) > 1:
                raise ValueError(f"arming schedule: {keyword!r} cannot be combined with other windows")
        if windows == ["always"]:
            return cls.always()
        if windows == ["never"]:
            return cls(())
        return cls(tuple(cls._parse_window(w) for w in windows))

    @staticmethod
    def _parse_window(window: str) -> ArmWindow:
        match = _WINDOW_RE.match(window)
        if match is None:
            raise ValueError(
                f"arming window {window!r}: expected days and a time range such as 'mon-fri 20:00-08:00'; "
                f"{_SCHEDULE_HELP}"
            )
        start = _minute_of_day(match["start"], window, is_end=False)
        end = _minute_of_day(match["end"], window, is_end=True)
        return ArmWindow(_parse_days(match["days"], window), start, end)

    @property
    def is_always(self) -> bool:
        return any(w.days == _ALL_DAYS and w.start == 0 and w.end == _MINUTES_PER_DAY for w in self.windows)

    def armed(self, at_utc: datetime, tz: tzinfo) -> bool:
        """Whether an event at `at_utc` (time-zone aware) alerts, reading the timetable in `tz`."""
        local = _aware(at_utc, "at_utc").astimezone(tz)
        minute = local.hour * 60 + local.minute
        return any(w.contains(local.weekday(), minute) for w in self.windows)

    def __str__(self) -> str:
        if not self.windows:
            return "never"
        if self.windows == ArmSchedule.always().windows:
            return "always"
        return "; ".join(str(w) for w in self.windows)


# --------------------------------------------------------------------------------- actions ---


class EndReason(StrEnum):
    QUIET = "quiet"  # no motion for merge_gap_s
    MAX_LENGTH = "max_length"  # split; the next event starts at this one's end
    OFFLINE = "offline"  # no frame at all for longer than post_roll_s
    CLOCK_JUMP = "clock_jump"  # the wall clock stepped back; tracking restarts
    SHUTDOWN = "shutdown"  # close() was called


@dataclass(frozen=True)
class EventStarted:
    event_id: str
    camera_id: str
    start: datetime
    """First motion frame (for a split continuation: the previous event's end)."""
    clip_from: datetime
    armed: bool
    """The schedule was armed at `start`: send the alert. Unarmed events are still stored."""
    continues: str | None = None
    """Id of the event this one continues after a max_length split."""


@dataclass(frozen=True)
class PeakChanged:
    """The frame passed to the `update` call that returned this is the event's best so far:
    the caller keeps it for the snapshot and thumbnail. `t` is always that frame's time."""

    event_id: str
    camera_id: str
    t: datetime
    score: float
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class EventEnded:
    """Everything the event row needs, so it can be written from this action alone."""

    event_id: str
    camera_id: str
    start: datetime
    end: datetime
    """Last motion frame; for a max_length split, the split time (= next event's start)."""
    clip_from: datetime
    clip_to: datetime
    """end + post-roll; a split ends its clip at `end`, where the next clip starts. May lie after
    the moment this action is returned: keep recording until then."""
    reason: EndReason
    armed: bool
    peak_t: datetime
    peak_score: float
    peak_boxes: tuple[Box, ...]


EventAction = EventStarted | PeakChanged | EventEnded


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} {t.isoformat()} has no time zone; pass an aware datetime in UTC")
    return t.astimezone(UTC)


def event_id_for(camera_id: str, start: datetime) -> str:
    """Deterministic id: camera and UTC start to the millisecond, e.g. 'kassa-20250301T201500.400Z'.

    Readable in logs and file names, sorts by time per camera, and the same footage replayed gives
    the same ids. Two events of one camera never share a start (each starts after the previous
    one's end) unless the wall clock was set back over the same millisecond.
    """
    start = _aware(start, "start")
    return f"{camera_id}-{start:%Y%m%dT%H%M%S}.{start.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------- tracker ---


@dataclass
class _OpenEvent:
    event_id: str
    start: datetime
    clip_from: datetime
    armed: bool
    last_motion: datetime
    peak_t: datetime
    peak_score: float
    peak_boxes: tuple[Box, ...]


class EventTracker:
    """The event state machine of one camera. Feed it every analysed frame in time order.

    `schedule` and `tz` decide `armed`; a schedule other than always needs the store's `tz`.
    """

    def __init__(
        self,
        camera_id: str,
        settings: EventSettings | None = None,
        *,
        schedule: ArmSchedule | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.settings = settings or EventSettings()
        self.schedule = schedule or ArmSchedule.always()
        if tz is None and not self.schedule.is_always:
            raise ValueError(f"camera {camera_id}: an arming schedule ({self.schedule}) needs the store's time zone")
        self._tz: tzinfo = tz or UTC
        s = self.settings
        self._min_motion = timedelta(seconds=s.min_motion_s)
        self._pre_roll = timedelta(seconds=s.pre_roll_s)
        self._post_roll = timedelta(seconds=s.post_roll_s)
        self._merge_gap = timedelta(seconds=s.merge_gap_s)
        self._max_event = timedelta(seconds=s.max_event_s)
        self._max_frame_gap = timedelta(seconds=s.max_frame_gap_s)
        self._clock_tolerance = timedelta(seconds=CLOCK_STEP_TOLERANCE_S)
        self._reset()

    def _reset(self) -> None:
        self._last_frame: datetime | None = None
        self._candidate_since: datetime | None = None
        self._event: _OpenEvent | None = None
        self._last_end: datetime | None = None

    @property
    def active_event_id(self) -> str | None:
        return self._event.event_id if self._event else None

    def update(
        self,
        t: datetime,
        motion: bool,
        score: float,
        boxes: Sequence[Box] = (),
        since: datetime | None = None,
    ) -> list[EventAction]:
        """One analysed frame at `t` (aware; converted to UTC). `since`: where the detector's run of
        moving frames that `motion` rests on began (`MotionResult.since`); without it, the run is
        taken to begin at the first frame passed with `motion`. Returns the actions, in order."""
        t = _aware(t, "frame time")
        actions: list[EventAction] = []
        if self._last_frame is not None and t <= self._last_frame:
            if self._last_frame - t <= self._clock_tolerance:
                return actions  # duplicate or reordered frame
            if self._event is not None:
                actions.append(self._end(self._event.last_motion, EndReason.CLOCK_JUMP))
            self._reset()
        actions += self._expire(t)
        if self._event is not None:
            if motion:
                actions += self._motion_in_event(t, score, tuple(boxes))
        elif not motion:
            self._candidate_since = None
        else:
            stalled = self._last_frame is not None and t - self._last_frame > self._max_frame_gap
            if stalled:
                self._candidate_since = t  # a run from before the stall was not observed throughout
            elif self._candidate_since is None:
                since = None if since is None else _aware(since, "since")
                # A run that began within the last event (ended by `tick` while its frames were
                # still on their way) starts the next one at this frame, as without `since`.
                if since is not None and (self._last_end is None or since > self._last_end):
                    self._candidate_since = since
                else:
                    self._candidate_since = t
            if t - self._candidate_since >= self._min_motion:
                actions += self._begin(self._candidate_since, self._candidate_since - self._pre_roll, t, score, boxes)
                self._candidate_since = None
        self._last_frame = t
        return actions

    def tick(self, now: datetime) -> list[EventAction]:
        """Advance time without a frame (call it periodically): ends an event whose camera went
        quiet or offline even when no more frames arrive. A `now` in the past does nothing."""
        now = _aware(now, "now")
        if self._last_frame is not None and now <= self._last_frame:
            return []
        return self._expire(now)

    def close(self, now: datetime) -> list[EventAction]:
        """Shutdown: end the open event (clip cut at `now`, when recording stops) and forget all state."""
        now = _aware(now, "now")
        actions = self.tick(now)
        if self._event is not None:
            end = self._event.last_motion
            clip_to = min(end + self._post_roll, max(now, end))
            actions.append(self._end(end, EndReason.SHUTDOWN, clip_to))
        self._reset()
        return actions

    def _expire(self, now: datetime) -> list[EventAction]:
        event = self._event
        if event is None:
            return []
        if self._last_frame is not None and now - self._last_frame > self._post_roll:
            return [self._end(event.last_motion, EndReason.OFFLINE)]
        if now - event.last_motion > self._merge_gap:
            return [self._end(event.last_motion, EndReason.QUIET)]
        return []

    def _motion_in_event(self, t: datetime, score: float, boxes: tuple[Box, ...]) -> list[EventAction]:
        event = self._event
        assert event is not None
        split_at = event.start + self._max_event
        if t >= split_at:
            # The previous motion was before split_at and merge_gap < max_event, so one split suffices.
            ended = self._end(split_at, EndReason.MAX_LENGTH, split_at)
            return [ended, *self._begin(split_at, split_at, t, score, boxes, continues=ended.event_id)]
        event.last_motion = t
        if score > event.peak_score:
            event.peak_t, event.peak_score, event.peak_boxes = t, score, boxes
            return [PeakChanged(event.event_id, self.camera_id, t, score, boxes)]
        return []

    def _begin(
        self,
        start: datetime,
        clip_from: datetime,
        t: datetime,
        score: float,
        boxes: Sequence[Box],
        continues: str | None = None,
    ) -> list[EventAction]:
        # The peak starts at the current frame, not at an earlier candidate frame: every
        # PeakChanged then names the frame the caller has in hand.
        boxes = tuple(boxes)
        event_id = event_id_for(self.camera_id, start)
        armed = self.schedule.armed(start, self._tz)
        self._event = _OpenEvent(event_id, start, clip_from, armed, t, t, score, boxes)
        return [
            EventStarted(event_id, self.camera_id, start, clip_from, armed, continues),
            PeakChanged(event_id, self.camera_id, t, score, boxes),
        ]

    def _end(self, end: datetime, reason: EndReason, clip_to: datetime | None = None) -> EventEnded:
        event = self._event
        assert event is not None
        self._event = None
        self._last_end = end
        return EventEnded(
            event_id=event.event_id,
            camera_id=self.camera_id,
            start=event.start,
            end=end,
            clip_from=event.clip_from,
            clip_to=end + self._post_roll if clip_to is None else clip_to,
            reason=reason,
            armed=event.armed,
            peak_t=event.peak_t,
            peak_score=event.peak_score,
            peak_boxes=event.peak_boxes,
        )
