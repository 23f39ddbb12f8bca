"""Retention decisions: what a mode keeps, what ages out, what goes when the disk fills."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cameras.retention import (
    ClipSpan,
    Deletion,
    DeletionReason,
    EventSpan,
    FreePlan,
    RetentionMode,
    RetentionPolicy,
    SegmentInfo,
    decision_time,
    disk_pressure,
    expired,
    horizon_days,
    keep_segment,
    keep_until,
    pressure_reason,
    to_free,
)

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SEGMENT_S = 10
MB = 1_000_000
GB = 1_000_000_000
PROPERTY = settings(database=None, deadline=None, max_examples=200)
_ids = count(1)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seg(
    start_s: float, camera: str = "kassa", length_s: float = SEGMENT_S, size: int = MB, **flags: bool
) -> SegmentInfo:
    return SegmentInfo(next(_ids), camera, s(start_s), s(start_s + length_s), size, **flags)


def event(start_s: float, end_s: float | None, camera: str = "kassa") -> EventSpan:
    return EventSpan(camera, s(start_s), None if end_s is None else s(end_s))


def policy(mode: RetentionMode = RetentionMode.CONTINUOUS, **changes: float) -> RetentionPolicy:
    return RetentionPolicy(mode, **changes)


# ------------------------------------------------------------------- keep at finalisation ---


def test_continuous_mode_keeps_everything() -> None:
    assert keep_segment(seg(0), [], policy(RetentionMode.CONTINUOUS))


@pytest.mark.parametrize(
    ("mode", "has_motion", "kept"),
    [
        (RetentionMode.MOTION, True, True),
        (RetentionMode.MOTION, False, False),
        (RetentionMode.EVENTS, True, False),  # a blip that never became an event
        (RetentionMode.EVENTS, False, False),
    ],
)
def test_without_events_only_motion_mode_keeps_motion(mode: RetentionMode, has_motion: bool, kept: bool) -> None:
    assert keep_segment(seg(0, has_motion=has_motion), [event(100, 120)], policy(mode)) is kept


@pytest.mark.parametrize("mode", [RetentionMode.MOTION, RetentionMode.EVENTS])
@pytest.mark.parametrize(
    ("segment_start", "kept"),
    [
        (80, False),  # [80, 90) ends before the pre-roll opens at 95
        (85, False),  # [85, 95) ends exactly where the pre-roll opens: none of its footage is needed
        (86, True),  # [86, 96) holds one second of pre-roll
        (100, True),  # inside the event
        (125, True),  # [125, 135) starts at the end of the event: post-roll
        (130, True),  # [130, 140) starts exactly where the post-roll ends: its first frame is needed
        (131, False),
    ],
)
def test_segments_inside_the_event_window_are_kept(mode: RetentionMode, segment_start: float, kept: bool) -> None:
    rolls = policy(mode, pre_roll_s=5, post_roll_s=10)
    assert keep_segment(seg(segment_start), [event(100, 120)], rolls) is kept


def test_a_running_event_claims_every_later_segment() -> None:
    p = policy(RetentionMode.EVENTS)
    assert keep_segment(seg(5000), [event(100, None)], p)
    assert not keep_segment(seg(80), [event(100, None)], p)


def test_events_of_another_camera_do_not_keep_a_segment() -> None:
    assert not keep_segment(seg(100, camera="zal"), [event(100, 120, camera="kassa")], policy(RetentionMode.EVENTS))


def test_a_legal_hold_is_kept_whatever_the_mode() -> None:
    assert keep_segment(seg(0, legal_hold=True), [], policy(RetentionMode.EVENTS))


def test_zero_rolls_and_instant_events() -> None:
    p = policy(RetentionMode.EVENTS, pre_roll_s=0, post_roll_s=0)
    instant = [event(10, 10)]
    assert keep_segment(seg(10), instant, p)  # [10, 20) holds the instant
    assert not keep_segment(seg(0), instant, p)  # [0, 10) does not
    assert keep_segment(seg(10, length_s=0), instant, p)


def test_decision_waits_for_the_pre_roll_of_a_later_event() -> None:
    segment = seg(0)
    assert decision_time(segment, policy(pre_roll_s=5)) == s(15)


# ---------------------------------------------------------------------------------- expiry ---

DAY = 86_400


def test_each_class_ages_out_after_its_own_days() -> None:
    p = policy(continuous_days=7, motion_days=14, events_days=30)
    plain, moving, in_event = seg(0), seg(20, has_motion=True), seg(40)
    segments, events = [plain, moving, in_event], [event(45, 46)]
    assert expired(segments, events, p, s(7 * DAY + 10)) == []  # exactly 7 days after the end
    assert expired(segments, events, p, s(7 * DAY + 11)) == [plain]
    assert expired(segments, events, p, s(14 * DAY + 31)) == [plain, moving]
    assert expired(segments, events, p, s(30 * DAY + 50)) == [plain, moving]
    assert expired(segments, events, p, s(30 * DAY + 51)) == [plain, moving, in_event]
    assert keep_until(in_event, events, p) == s(30 * DAY + 50)


def test_the_longest_applicable_days_win() -> None:
    p = policy(continuous_days=60, motion_days=14, events_days=30)
    segments = [seg(0, has_motion=True), seg(20)]
    assert expired(segments, [event(0, 5)], p, s(59 * DAY)) == []


def test_legal_holds_and_segments_in_progress_never_expire() -> None:
    held, writing = seg(0, legal_hold=True), seg(10, in_progress=True)
    assert expired([held, writing], [], policy(), s(10_000 * DAY)) == []
    assert keep_until(held, [], policy()) is None and keep_until(writing, [], policy()) is None


def test_expired_is_oldest_first_across_cameras() -> None:
    a, b, c = seg(20, camera="kassa"), seg(0, camera="zal"), seg(10, camera="sklad")
    assert expired([a, b, c], [], policy(), s(100 * DAY)) == [b, c, a]


def test_an_empty_or_new_index_expires_nothing() -> None:
    assert expired([], [], policy(), s(100 * DAY)) == []


def test_changing_the_mode_does_not_delete_kept_footage() -> None:
    plain = seg(0)
    assert expired([plain], [], policy(RetentionMode.EVENTS, continuous_days=7), s(DAY)) == []


# ------------------------------------------------------------------------- disk pressure ---


def test_to_free_takes_the_oldest_first_and_stops_when_enough() -> None:
    segments = [seg(30, "kassa"), seg(0, "zal"), seg(10, "kassa"), seg(20, "zal"), seg(40, "zal"), seg(50, "kassa")]
    plan = to_free(segments, int(2.5 * MB))
    assert [x.start for x in plan.segments] == [s(0), s(10), s(20)]
    assert (plan.freed_bytes, plan.missing_bytes) == (3 * MB, 0)
    exact = to_free(segments, 2 * MB)
    assert [x.start for x in exact.segments] == [s(0), s(10)]


def test_legal_holds_survive_even_when_the_quota_demands_them() -> None:
    held = [seg(t, legal_hold=True) for t in (0, 10, 20)]
    free = seg(30)
    newest = seg(40)
    plan = to_free([*held, free, newest], 10 * MB)
    assert plan == FreePlan((free,), MB, 9 * MB)


def test_the_newest_segment_of_each_camera_and_the_one_being_written_survive() -> None:
    kassa = [seg(0, "kassa"), seg(10, "kassa"), seg(20, "kassa", in_progress=True)]
    zal = [seg(5, "zal"), seg(15, "zal")]
    plan = to_free([*kassa, *zal], 100 * MB)
    # kassa's newest finished segment (10) stays as well as the one in progress.
    assert list(plan.segments) == [kassa[0], zal[0]]
    assert plan.missing_bytes == 98 * MB


def clip(start_s: float, end_s: float, camera: str = "kassa", size: int = MB, held: bool = False) -> ClipSpan:
    return ClipSpan(f"{camera}-{start_s}", camera, s(start_s), s(end_s), size, held)


def test_clips_go_in_the_same_oldest_first_order_as_segments() -> None:
    segments = [seg(0), seg(20), seg(40), seg(60)]
    clips = [clip(15, 30), clip(25, 38, "zal"), clip(45, 58)]
    plan = to_free(segments, int(3.5 * MB), clips)
    assert plan.in_order() == [segments[0], clips[0], segments[1], clips[1]]
    assert (plan.segments, plan.clips) == ((segments[0], segments[1]), (clips[0], clips[1]))
    assert (plan.freed_bytes, plan.missing_bytes) == (4 * MB, 0)
    # A clip starting with a segment goes after it (it was cut from it).
    same = to_free([seg(100, size=1), seg(200)], 10, [clip(100, 105, size=1)])
    assert [type(x) for x in same.in_order()] == [SegmentInfo, ClipSpan]


def test_held_clips_and_those_reaching_into_the_newest_footage_survive() -> None:
    segments = [seg(0), seg(20), seg(40)]  # 40 is kassa's newest
    held, into_newest, before = clip(5, 15, held=True), clip(35, 45), clip(25, 35)
    plan = to_free(segments, 100 * MB, [held, into_newest, before, clip(50, 60, "zal")])
    assert plan.in_order() == [segments[0], segments[1], before, clip(50, 60, "zal")]
    assert plan.missing_bytes == 96 * MB


def test_nothing_to_free() -> None:
    assert to_free([seg(0), seg(10)], 0) == FreePlan((), 0, 0)
    assert to_free([], 5) == FreePlan((), 0, 5)


@pytest.mark.parametrize(
    ("used", "quota", "free", "min_free", "need", "reason"),
    [
        (90 * GB, 100 * GB, 50 * GB, 10 * GB, 0, None),
        (100 * GB, 100 * GB, 10 * GB, 10 * GB, 0, None),  # exactly at both limits
        (105 * GB, 100 * GB, 50 * GB, 10 * GB, 5 * GB, DeletionReason.QUOTA),
        (90 * GB, 100 * GB, 7 * GB, 10 * GB, 3 * GB, DeletionReason.FREE_SPACE),
        (102 * GB, 100 * GB, 7 * GB, 10 * GB, 3 * GB, DeletionReason.FREE_SPACE),  # the larger deficit
        (500 * GB, None, 9 * GB, 10 * GB, 1 * GB, DeletionReason.FREE_SPACE),  # no quota
    ],
)
def test_disk_pressure(
    used: int, quota: int | None, free: int, min_free: int, need: int, reason: DeletionReason | None
) -> None:
    assert disk_pressure(used, quota, free, min_free) == need
    assert pressure_reason(used, quota, free, min_free) == reason


@pytest.mark.parametrize(
    "args",
    [(-1, None, 0, 0), (0, -1, 0, 0), (0, None, -5, 0), (0, None, 0, -1)],
)
def test_disk_pressure_refuses_negative_sizes(args: tuple[int, int | None, int, int]) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        disk_pressure(*args)


def test_horizon() -> None:
    assert horizon_days(2_000 * GB, 50 * GB) == 40.0
    assert horizon_days(2_000 * GB, 0) == math.inf
    with pytest.raises(ValueError, match="bytes_per_day_measured"):
        horizon_days(GB, -1)


def test_deletion_records_say_what_went_and_why() -> None:
    segment = seg(0, size=1234)
    record = Deletion.of(segment, DeletionReason.QUOTA)
    assert record == Deletion(segment.id, "kassa", s(0), s(10), 1234, DeletionReason.QUOTA)
    assert record.reason == "quota"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SegmentInfo(1, "kassa", datetime(2025, 3, 3), T0, 1), "time-zone aware"),
        (lambda: SegmentInfo(1, "kassa", s(10), s(0), 1), "before start"),
        (lambda: SegmentInfo(1, "kassa", s(0), s(10), -1), "negative"),
        (lambda: RetentionPolicy(events_days=0), "events_days"),
        (lambda: RetentionPolicy(pre_roll_s=-1), "pre_roll_s"),
    ],
)
def test_bad_records_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# ------------------------------------------------------------------------ property tests ---

segment_lists = st.lists(
    st.tuples(
        st.sampled_from(["kassa", "zal", "sklad"]),
        st.integers(0, 2000),  # start
        st.sampled_from([0, 5, 10]),  # length
        st.integers(0, 10 * MB),
        st.booleans(),  # has_motion
        st.booleans(),  # legal_hold
        st.booleans(),  # in_progress
    ),
    max_size=40,
).map(
    lambda xs: [
        SegmentInfo(i, cam, s(a), s(a + length), size, motion, hold, writing)
        for i, (cam, a, length, size, motion, hold, writing) in enumerate(xs)
    ]
)


def age_order(x: SegmentInfo) -> tuple[datetime, datetime, str, str]:
    return (x.start, x.end, x.camera_id, str(x.id))


event_lists = st.lists(
    st.tuples(st.sampled_from(["kassa", "zal"]), st.integers(-50, 2100), st.one_of(st.none(), st.integers(0, 100))),
    max_size=8,
).map(lambda xs: [EventSpan(c, s(a), None if d is None else s(a + d)) for c, a, d in xs])


@PROPERTY
@given(segments=segment_lists, needed=st.integers(0, 200 * MB))
def test_to_free_frees_the_oldest_eligible_prefix(segments: list[SegmentInfo], needed: int) -> None:
    plan = to_free(segments, needed)
    finished = [x for x in segments if not x.in_progress]
    cameras = {x.camera_id for x in finished}
    newest = {max((x for x in finished if x.camera_id == cam), key=age_order) for cam in cameras}
    for chosen in plan.segments:
        assert not chosen.legal_hold and not chosen.in_progress and chosen not in newest
    eligible = sorted((x for x in segments if not x.protected and x not in newest), key=age_order)
    assert list(plan.segments) == eligible[: len(plan.segments)]
    assert plan.freed_bytes == sum(x.size_bytes for x in plan.segments)
    assert plan.missing_bytes == max(0, needed - plan.freed_bytes)
    if plan.missing_bytes:
        assert len(plan.segments) == len(eligible)  # freed all it could
    elif plan.segments:
        assert plan.freed_bytes - plan.segments[-1].size_bytes < needed  # and not one more than needed


@PROPERTY
@given(
    segments=segment_lists,
    events=event_lists,
    mode=st.sampled_from(list(RetentionMode)),
    days_after=st.floats(0, 40),
)
def test_expiry_and_keep_agree_with_a_direct_reading_of_the_rules(
    segments: list[SegmentInfo], events: list[EventSpan], mode: RetentionMode, days_after: float
) -> None:
    p = policy(mode, continuous_days=3, motion_days=10, events_days=20, pre_roll_s=5, post_roll_s=10)
    now = s(2000) + timedelta(days=days_after)

    def in_event(x: SegmentInfo) -> bool:
        for e in events:
            if e.camera_id != x.camera_id:
                continue
            lo, hi = e.start - timedelta(seconds=5), None if e.end is None else e.end + timedelta(seconds=10)
            if x.start == x.end:
                hit = lo <= x.start and (hi is None or x.start <= hi)
            else:
                hit = x.end > lo and (hi is None or x.start <= hi)
            if hit:
                return True
        return False

    gone = expired(segments, events, p, now)
    assert gone == sorted(gone, key=age_order)
    for x in segments:
        days = 20 if in_event(x) else 10 if x.has_motion else 3
        should_go = not x.legal_hold and not x.in_progress and now - x.end > timedelta(days=days)
        assert (x in gone) is should_go
        until = keep_until(x, events, p)
        assert (until is None) is (x.legal_hold or x.in_progress)
        kept = (
            x.legal_hold
            or {
                RetentionMode.CONTINUOUS: True,
                RetentionMode.MOTION: x.has_motion or in_event(x),
                RetentionMode.EVENTS: in_event(x),
            }[mode]
        )
        assert keep_segment(x, events, p) is kept
