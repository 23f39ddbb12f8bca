"""Replaying encoded loops to playing clients in real time, on one timer for all streams.

Every stream of a server advances on the same frame clock: frame n is due at start + n / fps,
and one task sends each due frame to every client of every stream. A stream's frame n shows
unit (n + phase) of its loop, with RTP timestamp and sequence numbers that follow from n alone,
so they keep increasing across the loop's wrap. A client starts at a keyframe and falls back to
waiting for the next one whenever it cannot keep up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable

from appliance.simulator.rtp import CLOCK_RATE, SEQ_MOD, TS_MOD, PacketizedLoop

log = logging.getLogger(__name__)

MAX_CLIENT_BUFFER = 1 << 20
"""Bytes queued for one client beyond which its frames are dropped (4 s of a 2 Mbit/s stream):
a slow reader costs a bounded amount of memory and sees a gap, as with a real camera."""
STALL_TIMEOUT = 10.0
"""Seconds a client may stay above MAX_CLIENT_BUFFER before it is disconnected."""
MAX_LAG = 1.0
"""When the sender falls further behind the clock than this (s), it skips ahead instead of
bursting old frames, and clients resume at the next keyframe."""


class Sink:
    """One playing client of one stream: where its packets go and whether it is in step."""

    def __init__(self, transport: asyncio.WriteTransport, channel: int, label: str) -> None:
        self.transport = transport
        self.channel = channel
        self.label = label
        self.waiting_for_keyframe = True
        self._stalled_since: float | None = None
        self.frames_sent = 0
        self.frames_dropped = 0

    def offer(self, data: bytes, now: float) -> None:
        """Queue one picture (the caller skips non-keyframes while `waiting_for_keyframe`)."""
        if self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            self.frames_dropped += 1
            self.waiting_for_keyframe = True  # what follows a dropped frame cannot be decoded
            if self._stalled_since is None:
                self._stalled_since = now
            elif now - self._stalled_since > STALL_TIMEOUT:
                log.warning("disconnecting %s: it has not read its stream for %.1f s", self.label, STALL_TIMEOUT)
                self.transport.abort()
            return
        self._stalled_since = None
        self.waiting_for_keyframe = False
        self.transport.write(data)
        self.frames_sent += 1


class LiveStream:
    """One camera stream (main or sub) replaying its packetised loop with its own RTP identity."""

    def __init__(self, name: str, loop: PacketizedLoop, fps: int, phase_frames: int) -> None:
        self.name = name
        self.loop = loop
        self.fps = fps
        self.phase_frames = phase_frames
        self.ssrc = secrets.randbits(32)
        self._seq_base = secrets.randbits(16)
        self._ts_base = secrets.randbits(32)
        self.sinks: list[Sink] = []

    def rtp_timestamp(self, frame: int) -> int:
        return (self._ts_base + round(frame * CLOCK_RATE / self.fps)) % TS_MOD

    def first_seq(self, frame: int) -> int:
        return (self._seq_base + self.loop.packets_before(frame)) % SEQ_MOD

    def start_of(self, clock_frame: int) -> tuple[int, int]:
        """(seq, rtptime) of the first packet a client joining before `clock_frame` gets."""
        key = self.loop.next_keyframe(clock_frame + self.phase_frames)
        return self.first_seq(key), self.rtp_timestamp(key)

    def send(self, clock_frame: int, now: float) -> None:
        if not self.sinks:
            return
        frame = clock_frame + self.phase_frames
        unit = self.loop.unit(frame)
        seq, ts = self.first_seq(frame), self.rtp_timestamp(frame)
        rendered: dict[int, bytes] = {}  # clients almost always share channel 0: patch once
        for sink in self.sinks:
            if sink.waiting_for_keyframe and not unit.keyframe:
                continue
            data = rendered.get(sink.channel)
            if data is None:
                data = rendered[sink.channel] = unit.render(sink.channel, seq, ts, self.ssrc)
            sink.offer(data, now)

    def resync(self) -> None:
        for sink in self.sinks:
            sink.waiting_for_keyframe = True


class FrameClock:
    """The shared timer: sends each due frame of every stream that has clients.

    While nobody plays it sleeps; `wake()` (called when a client starts playing) moves it to the
    next frame due, so that `upcoming()` tells exactly which frame goes out next.
    """

    def __init__(self, fps: int, clock: Callable[[], float]) -> None:
        self.fps = fps
        self._clock = clock
        self.start = clock()
        self.streams: list[LiveStream] = []
        self._next = 0
        self._idle = True
        self._wake = asyncio.Event()

    def elapsed_frames(self) -> float:
        return (self._clock() - self.start) * self.fps

    def upcoming(self) -> int:
        """The clock frame that goes out next."""
        if self._idle:
            return max(self._next, math.ceil(self.elapsed_frames()))
        return self._next

    def wake(self) -> None:
        if self._idle:
            self._next = self.upcoming()
            self._idle = False
        self._wake.set()

    async def run(self) -> None:
        max_lag = max(1, round(MAX_LAG * self.fps))
        while True:
            if not any(s.sinks for s in self.streams):
                self._idle = True
                self._wake.clear()
                await self._wake.wait()
            delay = self.start + self._next / self.fps - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = math.floor(self.elapsed_frames()) - self._next
            if behind > max_lag:
                log.warning("the simulator fell %.1f s behind; skipping ahead", behind / self.fps)
                self._next += behind
                for stream in self.streams:
                    stream.resync()
            now = self._clock()
            for stream in self.streams:
                stream.send(self._next, now)
            self._next += 1
