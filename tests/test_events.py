"""The per-camera event state machine and the arming schedule, driven by synthetic frame streams."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cameras.events import (
    ArmSchedule,
    ArmWindow,
    EndReason,
    EventAction,
    EventEnded,
    EventSettings,
    EventStarted,
    EventTracker,
    PeakChanged,
    event_id_for,
)

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday
FRAME = timedelta(seconds=0.2)  # 5 fps, the default analysis rate
BOX = (10, 20, 30, 40)
PROPERTY = settings(database=None, deadline=None, max_examples=150)
A = TypeVar("A", EventStarted, PeakChanged, EventEnded)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frames(start_s: float, end_s: float, motion: bool, score: float = 0.5) -> list[tuple[datetime, bool, float]]:
    """Frames at 5 fps from start_s up to and including end_s."""
    count = round((end_s - start_s) / FRAME.total_seconds())
    return [(s(start_s) + i * FRAME, motion, score) for i in range(count + 1)]


def feed(tracker: EventTracker, stream: Iterable[tuple[datetime, bool, float]]) -> list[EventAction]:
    actions: list[EventAction] = []
    for t, motion, score in stream:
        actions += tracker.update(t, motion, score, [BOX] if motion else [])
    return actions


def of_type(actions: list[EventAction], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


# -------------------------------------------------------------------------- state machine ---


@pytest.mark.parametrize("moving_frames", [1, 2])
def test_short_blips_never_start_an_event(moving_frames: int) -> None:
    tracker = EventTracker("kassa")
    blip = frames(0, (moving_frames - 1) * 0.2, True)
    later_blip = [(t + timedelta(seconds=5), m, sc) for t, m, sc in blip]
    stream = blip + frames(1, 3, False) + later_blip + frames(6, 30, False)
    assert feed(tracker, stream) == []
    assert tracker.active_event_id is None


def test_event_starts_within_one_second_of_a_figure_entering() -> None:
    tracker = EventTracker("kassa")
    assert feed(tracker, frames(0, 10, False)) == []
    entered = s(10.2)
    started_at = None
    for t, motion, score in frames(10.2, 12, True):
        if of_type(tracker.update(t, motion, score, [BOX]), EventStarted):
            started_at = t
            break
    assert started_at is not None and started_at - entered <= timedelta(seconds=1)
    assert started_at - entered == timedelta(seconds=0.4)


def _run(tracker: EventTracker, since_s: float, first_s: float, last_s: float) -> list[EventAction]:
    """Motion frames at 15 fps from `first_s` to `last_s`, all resting on a run that began at `since_s`."""
    count = round((last_s - first_s) * 15)
    actions: list[EventAction] = []
    for i in range(count + 1):
        actions += tracker.update(s(first_s + i / 15), True, 0.5, [BOX], since=s(since_s))
    return actions


def test_min_motion_counts_from_the_start_of_the_detectors_run() -> None:
    """The detector calls motion once its run is persistence_s old: the tracker's confirmation
    overlaps that time instead of following it."""
    tracker = EventTracker("kassa", EventSettings(min_motion_s=0.25, pre_roll_s=5))
    feed(tracker, frames(0, 10, False))
    actions = _run(tracker, 10.0, 10.0 + 4 / 15, 11)
    (started,) = of_type(actions, EventStarted)
    assert actions[0] is started, "the first motion frame starts the event"
    assert started.start == s(10.0) and started.clip_from == s(5.0)
    assert started.event_id == event_id_for("kassa", s(10.0))


def test_a_longer_min_motion_still_counts_from_the_run_start() -> None:
    tracker = EventTracker("kassa", EventSettings(min_motion_s=1.0))
    feed(tracker, frames(0, 10, False))
    started_at = [a for a in _run(tracker, 10.0, 10.0 + 4 / 15, 12) if isinstance(a, EventStarted)]
    assert [a.start for a in started_at] == [s(10.0)]
    tracker = EventTracker("kassa", EventSettings(min_motion_s=1.0))
    feed(tracker, frames(0, 10, False))
    assert of_type(_run(tracker, 10.0, 10.0 + 4 / 15, 10.0 + 14 / 15), EventStarted) == []


def test_a_run_from_before_a_stall_is_not_counted() -> None:
    tracker = EventTracker("kassa", EventSettings(min_motion_s=0.25, max_frame_gap_s=2))
    feed(tracker, frames(0, 10, False))
    # The next frame comes 3 s later (a decoder stall), still with the detector's old run.
    assert tracker.update(s(13), True, 0.5, [BOX], since=s(10)) == []
    (started,) = of_type(_run(tracker, 10.0, 13 + 1 / 15, 14), EventStarted)
    assert started.start == s(13)


def test_a_run_older_than_the_last_event_never_restarts_it() -> None:
    """The tracker ended an event on a tick (no frame for the merge gap: the analyser fell behind);
    the late frames still carry the detector's run from inside that event."""
    tracker = EventTracker("kassa", EventSettings(min_motion_s=0.25, merge_gap_s=1, post_roll_s=1))
    feed(tracker, frames(0, 10, False))
    (first,) = of_type(_run(tracker, 10.0, 10.0 + 4 / 15, 11), EventStarted)
    (ended,) = of_type(tracker.tick(s(12.5)), EventEnded)
    assert ended.end == s(11)
    actions = _run(tracker, 10.0, 11 + 1 / 15, 12)
    (second,) = of_type(actions, EventStarted)
    assert second.start == s(11 + 1 / 15) and second.event_id != first.event_id


def test_start_pre_roll_and_post_roll() -> None:
    tracker = EventTracker("kassa", EventSettings(pre_roll_s=5, post_roll_s=10, merge_gap_s=10))
    actions = feed(tracker, frames(0, 2, True) + frames(2.2, 20, False))
    (started,) = of_type(actions, EventStarted)
    (ended,) = of_type(actions, EventEnded)
    assert started.start == s(0) and started.clip_from == s(-5) and started.continues is None
    assert ended.event_id == started.event_id
    assert (ended.start, ended.end, ended.clip_from, ended.clip_to) == (s(0), s(2), s(-5), s(12))
    assert ended.reason is EndReason.QUIET
    assert ended.camera_id == started.camera_id == "kassa"


def test_event_ends_on_the_first_frame_after_the_merge_gap() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 2, True))
    assert feed(tracker, frames(2.2, 12, False)) == []  # exactly 10 s after the last motion: still open
    (ended,) = tracker.update(s(12.2), False, 0.0, [])
    assert isinstance(ended, EventEnded) and ended.end == s(2)


def test_motion_inside_the_post_roll_extends_the_same_event() -> None:
    tracker = EventTracker("kassa")
    stream = frames(0, 2, True) + frames(2.2, 9, False) + frames(9.2, 10, True) + frames(10.2, 30, False)
    actions = feed(tracker, stream)
    assert len(of_type(actions, EventStarted)) == 1
    (ended,) = of_type(actions, EventEnded)
    assert (ended.start, ended.end, ended.clip_to) == (s(0), s(10), s(20))


def test_motion_after_the_merge_gap_is_a_new_event_needing_min_motion_again() -> None:
    tracker = EventTracker("kassa")
    stream = frames(0, 2, True) + frames(2.2, 13, False) + [(s(13.2), True, 0.9)] + frames(13.4, 30, False)
    actions = feed(tracker, stream)
    assert len(of_type(actions, EventStarted)) == 1  # the lone frame at 13.2 s is a blip
    stream = frames(40, 41, True) + frames(41.2, 60, False)
    started = of_type(feed(tracker, stream), EventStarted)
    assert [e.start for e in started] == [s(40)]


def test_long_activity_is_split_into_consecutive_events_without_gap() -> None:
    tracker = EventTracker("kassa", EventSettings(max_event_s=300))
    actions = feed(tracker, frames(0, 700, True) + frames(700.2, 720, False))
    started = of_type(actions, EventStarted)
    ended = of_type(actions, EventEnded)
    assert [(e.start, e.end, e.reason) for e in ended] == [
        (s(0), s(300), EndReason.MAX_LENGTH),
        (s(300), s(600), EndReason.MAX_LENGTH),
        (s(600), s(700), EndReason.QUIET),
    ]
    assert [e.start for e in started] == [s(0), s(300), s(600)]
    assert [e.continues for e in started] == [None, started[0].event_id, started[1].event_id]
    # Clips are contiguous too: each continuation's clip starts where the previous one stopped.
    assert ended[0].clip_to == started[1].clip_from == s(300)
    assert ended[1].clip_to == started[2].clip_from == s(600)
    assert ended[2].clip_to == s(710)
    assert len({e.event_id for e in started}) == 3


def test_split_when_motion_resumes_after_the_limit_within_the_merge_gap() -> None:
    tracker = EventTracker("kassa", EventSettings(max_event_s=60))
    stream = frames(0, 58, True) + frames(58.2, 63, False) + frames(63.2, 65, True) + frames(65.2, 90, False)
    ended = of_type(feed(tracker, stream), EventEnded)
    assert [(e.start, e.end, e.reason) for e in ended] == [
        (s(0), s(60), EndReason.MAX_LENGTH),
        (s(60), s(65), EndReason.QUIET),
    ]


def test_peak_follows_the_best_frame_and_names_the_frame_just_passed() -> None:
    tracker = EventTracker("kassa")
    scores = [0.2, 0.3, 0.25, 0.6, 0.5, 0.9, 0.1, 0.9]
    peaks: list[PeakChanged] = []
    for i, score in enumerate(scores):
        t = s(i * 0.2)
        for action in tracker.update(t, True, score, [(i, i, 5, 5)]):
            if isinstance(action, PeakChanged):
                assert action.t == t and action.boxes == ((i, i, 5, 5),)
                peaks.append(action)
    (ended,) = of_type(feed(tracker, frames(2, 20, False)), EventEnded)
    # The event is confirmed on the third frame (0.25), which seeds the peak; earlier frames are gone.
    assert [p.score for p in peaks] == [0.25, 0.6, 0.9]
    assert (ended.peak_t, ended.peak_score, ended.peak_boxes) == (s(1.0), 0.9, ((5, 5, 5, 5),))


def test_a_camera_offline_longer_than_the_post_roll_ends_the_event_at_the_last_motion() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 3, True))
    actions = tracker.update(s(30), True, 0.5, [BOX])
    (ended,) = actions
    assert isinstance(ended, EventEnded)
    assert (ended.end, ended.clip_to, ended.reason) == (s(3), s(13), EndReason.OFFLINE)
    # The frame after the outage only opens a candidate: one frame is not an event.
    assert tracker.active_event_id is None
    started = of_type(feed(tracker, frames(30.2, 31, True)), EventStarted)
    assert [e.start for e in started] == [s(30)]


def test_a_short_outage_inside_an_event_keeps_it_open() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 3, True))
    assert tracker.update(s(8), True, 0.5, [BOX]) == []
    (ended,) = of_type(feed(tracker, frames(8.2, 30, False)), EventEnded)
    assert (ended.start, ended.end) == (s(0), s(8))


def test_tick_ends_an_event_when_frames_stop_arriving() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 3, True))
    assert tracker.tick(s(13)) == []
    assert tracker.tick(s(1)) == []  # a tick in the past does nothing
    (ended,) = tracker.tick(s(13.2))
    assert isinstance(ended, EventEnded) and ended.reason is EndReason.OFFLINE and ended.end == s(3)
    assert tracker.tick(s(60)) == []


def test_tick_ends_a_quiet_event_when_the_merge_gap_is_shorter_than_the_post_roll() -> None:
    tracker = EventTracker("kassa", EventSettings(merge_gap_s=4, post_roll_s=10))
    feed(tracker, frames(0, 3, True) + frames(3.2, 5, False))
    (ended,) = tracker.tick(s(7.2))
    assert isinstance(ended, EventEnded)
    assert (ended.reason, ended.end, ended.clip_to) == (EndReason.QUIET, s(3), s(13))


def test_a_stall_while_motion_builds_up_restarts_the_count() -> None:
    tracker = EventTracker("kassa")
    stream = [(s(0), True, 0.5), (s(0.2), True, 0.5), (s(3), True, 0.5)]  # 2.8 s decoder stall
    assert feed(tracker, stream) == []
    assert feed(tracker, [(s(3.2), True, 0.5)]) == []
    (started, _peak) = feed(tracker, [(s(3.4), True, 0.5)])
    assert isinstance(started, EventStarted) and started.start == s(3)


def test_small_clock_steps_back_are_dropped() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 2, True))
    event_id = tracker.active_event_id
    assert tracker.update(s(1.0), True, 99.0, [BOX]) == []  # 1 s back: reordered frame
    assert tracker.update(s(2), True, 99.0, [BOX]) == []  # duplicate timestamp
    assert tracker.active_event_id == event_id
    (ended,) = of_type(feed(tracker, frames(2.2, 20, False)), EventEnded)
    assert ended.end == s(2) and ended.peak_score == 0.5


def test_a_clock_reset_closes_the_event_and_restarts_tracking() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(3600, 3602, True))
    actions = feed(tracker, frames(0, 1, True))
    ended = of_type(actions, EventEnded)
    assert [(e.end, e.reason) for e in ended] == [(s(3602), EndReason.CLOCK_JUMP)]
    assert [e.start for e in of_type(actions, EventStarted)] == [s(0)]


def test_close_ends_the_open_event_and_cuts_the_clip_at_shutdown() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 3, True))
    (ended,) = tracker.close(s(5))
    assert isinstance(ended, EventEnded)
    assert (ended.end, ended.clip_to, ended.reason) == (s(3), s(5), EndReason.SHUTDOWN)
    assert tracker.active_event_id is None
    assert tracker.close(s(6)) == []
    # The tracker is usable again after a restart, even with an earlier clock.
    assert [e.start for e in of_type(feed(tracker, frames(1, 2, True)), EventStarted)] == [s(1)]


def test_close_after_the_post_roll_keeps_the_full_clip() -> None:
    tracker = EventTracker("kassa")
    feed(tracker, frames(0, 3, True) + frames(3.2, 12, False))
    (ended,) = tracker.close(s(13.2))  # quiet for over 10 s: a normal end, not a shutdown
    assert isinstance(ended, EventEnded) and ended.reason is EndReason.QUIET and ended.clip_to == s(13)


def test_zero_min_motion_starts_on_the_first_frame() -> None:
    tracker = EventTracker("kassa", EventSettings(min_motion_s=0))
    (started, peak) = tracker.update(s(0), True, 0.4, [BOX])
    assert isinstance(started, EventStarted) and isinstance(peak, PeakChanged) and started.start == s(0)


def test_frame_times_must_be_aware_and_are_converted_to_utc() -> None:
    tracker = EventTracker("kassa")
    with pytest.raises(ValueError, match="no time zone"):
        tracker.update(datetime(2025, 3, 3, 12, 0), True, 0.5, [BOX])
    local = [(t.astimezone(MSK), m, sc) for t, m, sc in frames(0, 1, True)]
    (started,) = of_type(feed(tracker, local), EventStarted)
    assert started.start == s(0) and started.start.tzinfo is UTC


def test_event_ids_are_deterministic_and_readable() -> None:
    assert event_id_for("kassa", s(0.4567)) == "kassa-20250303T120000.456Z"
    assert event_id_for("kassa", s(0).astimezone(MSK)) == "kassa-20250303T120000.000Z"
    first = EventTracker("kassa")
    second = EventTracker("kassa")
    stream = frames(0, 2, True) + frames(2.2, 20, False)
    assert feed(first, stream) == feed(second, stream)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pre_roll_s": -1}, "pre_roll_s"),
        ({"merge_gap_s": 0}, "merge_gap_s"),
        ({"max_event_s": 10, "merge_gap_s": 10}, "max_event_s"),
        ({"max_frame_gap_s": -0.5}, "max_frame_gap_s"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventSettings(**changes)


def test_events_carry_the_arming_state_at_their_start() -> None:
    schedule = ArmSchedule.parse("mon-fri 20:00-08:00")
    tracker = EventTracker("kassa", schedule=schedule, tz=MSK)
    # Monday 19:59:59.8 local: the motion starts unarmed and is confirmed 0.4 s later, armed.
    day = datetime(2025, 3, 3, 19, 59, 59, 800000, tzinfo=MSK)
    stream = [(day + i * FRAME, True, 0.5) for i in range(3)] + [(day + timedelta(seconds=20), False, 0)]
    night = day + timedelta(seconds=60)
    stream += [(night + i * FRAME, True, 0.5) for i in range(3)]
    started = of_type(feed(tracker, stream), EventStarted)
    assert [e.armed for e in started] == [False, True]
    with pytest.raises(ValueError, match="time zone"):
        EventTracker("kassa", schedule=schedule)


def test_a_split_continuation_is_armed_by_its_own_start() -> None:
    tracker = EventTracker("kassa", EventSettings(max_event_s=60), schedule=ArmSchedule.parse("20:00-08:00"), tz=MSK)
    begin = datetime(2025, 3, 3, 19, 59, 30, tzinfo=MSK)
    stream = [(begin + i * FRAME, True, 0.5) for i in range(400)]
    started = of_type(feed(tracker, stream), EventStarted)
    assert [(e.start.astimezone(MSK).time().isoformat(), e.armed) for e in started] == [
        ("19:59:30", False),
        ("20:00:30", True),
    ]


# ------------------------------------------------------------------------ property tests ---

frame_steps = st.lists(
    st.tuples(
        st.sampled_from([0.2, 0.2, 0.2, 0.2, 1.0, 3.0, 12.0]),  # mostly 5 fps, some stalls and outages
        st.booleans(),
        st.floats(min_value=0, max_value=1),
    ),
    max_size=400,
)


@PROPERTY
@given(steps=frame_steps, max_event=st.sampled_from([30.0, 300.0]))
def test_any_frame_stream_gives_well_formed_events(steps: list[tuple[float, bool, float]], max_event: float) -> None:
    conf = EventSettings(max_event_s=max_event)
    tracker = EventTracker("kassa", conf)
    t = T0
    stream: list[tuple[datetime, bool, float]] = []
    log: list[tuple[datetime, EventAction]] = []
    for gap, motion, score in steps:
        t += timedelta(seconds=gap)
        stream.append((t, motion, score))
        log += [(t, a) for a in tracker.update(t, motion, score, [BOX] if motion else [])]
    log += [(t, a) for a in tracker.close(t + timedelta(seconds=1))]

    open_event: EventStarted | None = None
    best = -1.0
    events: list[tuple[EventStarted, EventEnded]] = []
    for at, action in log:
        if isinstance(action, EventStarted):
            assert open_event is None
            open_event, best = action, -1.0
        elif isinstance(action, PeakChanged):
            assert open_event is not None and action.event_id == open_event.event_id
            assert action.t == at and action.score > best
            best = action.score
        else:
            assert open_event is not None and action.event_id == open_event.event_id
            assert action.peak_score == best and open_event.start <= action.peak_t <= at
            events.append((open_event, action))
            open_event = None
    assert open_event is None

    pre, post = timedelta(seconds=conf.pre_roll_s), timedelta(seconds=conf.post_roll_s)
    min_motion, max_gap = timedelta(seconds=conf.min_motion_s), timedelta(seconds=conf.max_frame_gap_s)
    for (started, ended), nxt in zip(events, [*events[1:], None], strict=False):
        assert started.start <= ended.end and ended.end - ended.start <= timedelta(seconds=max_event)
        assert started.clip_from == (started.start if started.continues else started.start - pre)
        if ended.reason is EndReason.MAX_LENGTH:
            assert nxt is not None and nxt[0].continues == ended.event_id
            assert ended.clip_to == ended.end == nxt[0].start == nxt[0].clip_from
        elif ended.reason is EndReason.SHUTDOWN:
            assert ended.end <= ended.clip_to <= ended.end + post
        else:
            assert ended.clip_to == ended.end + post
        if nxt is not None:
            assert nxt[0].start >= ended.end
        if started.continues is None:
            # A real start: motion in every frame from the start until min_motion_s later.
            held = [m for ft, m, _ in stream if started.start <= ft <= started.start + min_motion]
            assert held and all(held)

    # Sustained motion is never missed: a frame ending min_motion_s of unbroken motion lies in an event.
    run_start: datetime | None = None
    previous: datetime | None = None
    for ft, motion, _ in stream:
        if not motion:
            run_start = None
        elif run_start is None or (previous is not None and ft - previous > max_gap):
            run_start = ft
        if run_start is not None and ft - run_start >= min_motion:
            assert any(st_.start <= ft <= en.end for st_, en in events), ft
        previous = ft


# --------------------------------------------------------------------------- arm schedule ---


def msk(day: int, hh: int, mm: int, month: int = 3) -> datetime:
    """A UTC instant from a Moscow wall-clock time; day 3 of March 2025 is a Monday."""
    return datetime(2025, month, day, hh, mm, tzinfo=MSK).astimezone(UTC)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (msk(3, 19, 59), False),  # Monday evening, before
        (msk(3, 20, 0), True),
        (msk(4, 7, 59), True),  # Tuesday morning, same window
        (msk(4, 8, 0), False),
        (msk(8, 7, 30), True),  # Saturday morning: Friday's window
        (msk(8, 20, 0), False),  # Saturday evening is not listed
        (msk(3, 3, 0), False),  # Monday early: Sunday's window is not listed
        (msk(9, 21, 0), False),
    ],
)
def test_overnight_window_belongs_to_the_evening_it_opens(when: datetime, expected: bool) -> None:
    assert ArmSchedule.parse("mon-fri 20:00-08:00").armed(when, MSK) is expected


def test_whole_days_with_24_00() -> None:
    weekend = ArmSchedule.parse("sat,sun 00:00-24:00")
    assert weekend.armed(msk(8, 0, 0), MSK)
    assert weekend.armed(msk(9, 23, 59), MSK)
    assert not weekend.armed(msk(10, 0, 0), MSK)
    assert not weekend.armed(msk(7, 23, 59), MSK)


def test_moscow_has_no_daylight_saving_but_wall_clock_zones_follow_theirs() -> None:
    closed = ArmSchedule.parse("20:00-08:00")
    winter, summer = datetime(2025, 1, 6, 17, 0, tzinfo=UTC), datetime(2025, 7, 7, 17, 0, tzinfo=UTC)
    assert closed.armed(winter, MSK) and closed.armed(summer, MSK)  # 20:00 MSK all year round
    assert not closed.armed(winter - timedelta(minutes=1), MSK)
    assert not closed.armed(summer - timedelta(minutes=1), MSK)
    # Berlin: 19:00 UTC is 20:00 in winter but 21:00 in summer; 18:30 UTC is armed only in summer.
    assert not closed.armed(winter.replace(hour=18, minute=30), BERLIN)
    assert closed.armed(summer.replace(hour=18, minute=30), BERLIN)


def test_always_never_lists_and_spelling() -> None:
    assert ArmSchedule.parse("always").armed(T0, MSK)
    assert ArmSchedule.parse(" Always ").is_always
    assert not ArmSchedule.parse("never").armed(T0, MSK)
    combined = ArmSchedule.parse(["Mon - Fri 20:00 - 08:00", "Sat, Sun 00:00-24:00"])
    assert combined == ArmSchedule.parse("mon-fri 20:00-08:00; sat,sun 00:00-24:00")
    assert str(combined) == "mon-fri 20:00-08:00; sat-sun 00:00-24:00"
    assert ArmSchedule.parse("fri-mon 09:00-18:00").windows[0].days == frozenset({4, 5, 6, 0})
    assert ArmSchedule.parse("09:00-18:00").windows[0].days == frozenset(range(7))
    assert str(ArmSchedule.parse("mon-sun 00:00-24:00")) == "always"
    assert str(ArmSchedule.parse("mon,wed,thu 22:00-00:00")) == "mon,wed-thu 22:00-00:00"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("mnday 20:00-08:00", "unknown day 'mnday'"),
        ("mon fri 20:00-08:00", "unknown day 'mon fri'"),
        ("mon-fri-sat 20:00-08:00", "unknown day 'mon-fri-sat'"),
        ("mon-fri 2000-0800", "expected days and a time range"),
        ("mon-fri 20:00", "expected days and a time range"),
        ("mon-fri 25:00-08:00", "'25:00' is not a time of day"),
        ("mon-fri 20:00-24:30", "'24:30' is not a time of day"),
        ("mon-fri 20:61-08:00", "'20:61' is not a time of day"),
        ("24:00-08:00", "cannot start at 24:00"),
        ("mon 08:00-08:00", "start and end are equal"),
        ("always; mon 10:00-12:00", "'always' cannot be combined"),
        ("ok; sat 10:00-12:00", "'ok'"),
    ],
)
def test_bad_schedules_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArmSchedule.parse(spec)


def test_armed_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        ArmSchedule.always().armed(datetime(2025, 3, 3, 12, 0), MSK)


def test_windows_are_validated_when_built_directly() -> None:
    with pytest.raises(ValueError, match=r"subset of 0\.\.6"):
        ArmWindow(frozenset({7}), 0, 60)
    with pytest.raises(ValueError, match=r"within 0\.\.1440"):
        ArmWindow(frozenset({0}), 1440, 60)


windows = (
    st.tuples(st.frozensets(st.integers(0, 6), min_size=1), st.integers(0, 1439), st.integers(0, 1440))
    .filter(lambda x: x[1] != x[2])
    .map(lambda x: ArmWindow(*x))
)
schedules = st.lists(windows, max_size=4).map(lambda ws: ArmSchedule(tuple(ws)))


@PROPERTY
@given(schedule=schedules)
def test_printed_schedules_parse_back_to_the_same_hours(schedule: ArmSchedule) -> None:
    assert ArmSchedule.parse(str(schedule)) == schedule


@PROPERTY
@given(
    schedule=schedules,
    minute_of_week=st.integers(0, 7 * 1440 - 1),
    zone=st.sampled_from([MSK, BERLIN, UTC]),
)
def test_armed_matches_the_minutes_each_window_covers(schedule: ArmSchedule, minute_of_week: int, zone: tzinfo) -> None:
    covered: set[int] = set()
    for w in schedule.windows:
        length = (w.end - w.start) % 1440 or 1440
        for day in w.days:
            first = day * 1440 + w.start
            covered.update((first + i) % (7 * 1440) for i in range(length))
    # 2025-06-02 is a Monday; Berlin is then on summer time (no gaps or repeats in June).
    local = datetime(2025, 6, 2, tzinfo=zone) + timedelta(minutes=minute_of_week, seconds=30)
    assert schedule.armed(local.astimezone(UTC), zone) is (minute_of_week in covered)
