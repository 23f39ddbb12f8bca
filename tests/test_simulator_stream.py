"""The replay policy: clients start on keyframes, slow clients lose frames then the connection,
and the shared frame clock keeps time (and skips ahead rather than bursting when it falls behind)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from appliance.simulator import stream
from appliance.simulator.h264 import AccessUnit
from appliance.simulator.rtp import PacketizedLoop
from appliance.simulator.stream import FrameClock, LiveStream, Sink
from tests.test_simulator_rtp import parse_frames

SPS = bytes.fromhex("674d401fda014016e8400000030040000007a3c60ca8")
PPS = bytes.fromhex("68ef0fc8")


class RecordingTransport(asyncio.WriteTransport):
    """A transport that keeps what is written and reports a buffer size the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.buffered = 0
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def loop_of(pattern: str) -> PacketizedLoop:
    """K = keyframe, p = other picture."""
    units = [
        AccessUnit((SPS, PPS, b"\x65" + bytes([i]) * 10) if c == "K" else (b"\x41" + bytes([i]) * 10,), c == "K")
        for i, c in enumerate(pattern)
    ]
    return PacketizedLoop(units)


def sent_frames(live: LiveStream, transport: RecordingTransport, frames: range, now: float = 0.0) -> list[int]:
    """Which clock frames reached the transport."""
    got = []
    for f in frames:
        before = len(transport.written)
        live.send(f, now)
        if len(transport.written) > before:
            got.append(f)
    return got


def test_a_new_client_starts_at_the_next_keyframe() -> None:
    live = LiveStream("cam/main", loop_of("KppKpp"), fps=10, phase_frames=1)
    transport = RecordingTransport()
    live.sinks.append(Sink(transport, 0, "test"))
    # With phase 1, clock frame 2 shows unit 3, the second keyframe.
    assert sent_frames(live, transport, range(0, 6)) == [2, 3, 4, 5]
    assert live.start_of(0) == (live.first_seq(3), live.rtp_timestamp(3))


def test_slow_client_loses_frames_then_resumes_at_a_keyframe_then_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "MAX_CLIENT_BUFFER", 1000)
    monkeypatch.setattr(stream, "STALL_TIMEOUT", 5.0)
    live = LiveStream("cam/main", loop_of("Kpppp"), fps=10, phase_frames=0)
    transport = RecordingTransport()
    sink = Sink(transport, 0, "test")
    live.sinks.append(sink)
    assert sent_frames(live, transport, range(0, 2)) == [0, 1]
    transport.buffered = 5000  # the client stopped reading
    assert sent_frames(live, transport, range(2, 4), now=1.0) == []
    assert sink.frames_dropped == 1 and sink.waiting_for_keyframe  # frame 3 was not even offered
    transport.buffered = 0  # it reads again: nothing until the next keyframe
    assert sent_frames(live, transport, range(4, 7), now=2.0) == [5, 6]
    transport.buffered = 5000
    sent_frames(live, transport, range(10, 11), now=3.0)
    assert not transport.aborted
    sent_frames(live, transport, range(15, 16), now=9.0)  # over the limit for 6 s > STALL_TIMEOUT
    assert transport.aborted


def test_each_channel_gets_its_own_framing() -> None:
    live = LiveStream("cam/main", loop_of("Kp"), fps=10, phase_frames=0)
    a, b = RecordingTransport(), RecordingTransport()
    live.sinks += [Sink(a, 0, "a"), Sink(b, 6, "b")]
    live.send(0, 0.0)
    frames_a, frames_b = parse_frames(a.written[0]), parse_frames(b.written[0])
    assert {f[0] for f in frames_a} == {0} and {f[0] for f in frames_b} == {6}
    assert [f[1:] for f in frames_a] == [f[1:] for f in frames_b]  # the same RTP packets


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clock_upcoming_frame_when_idle_and_when_woken() -> None:
    time = FakeTime()
    clock = FrameClock(10, time)
    time.now += 1.25
    assert clock.upcoming() == 13  # idle: the next frame due
    clock.wake()
    time.now += 0.5
    assert clock.upcoming() == 13  # running: what the sender sends next, even if it is late


async def test_clock_sends_in_real_time_and_skips_ahead_when_far_behind(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    offset = 0.0
    clock = FrameClock(20, lambda: loop.time() + offset)
    live = LiveStream("cam/main", loop_of("Kp" * 5), fps=20, phase_frames=0)
    clock.streams.append(live)
    transport = RecordingTransport()
    live.sinks.append(Sink(transport, 0, "test"))
    clock.wake()
    task = asyncio.create_task(clock.run())
    try:
        await asyncio.sleep(0.5)
        assert 8 <= len(transport.written) <= 12  # 20 fps for half a second
        with caplog.at_level(logging.WARNING):
            offset = 3.0  # as if the process had been frozen for 3 s
            await asyncio.sleep(0.2)
        assert "behind; skipping ahead" in caplog.text
        # It did not burst 60 stale frames; it resynchronised at a keyframe instead.
        assert len(transport.written) < 25
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
