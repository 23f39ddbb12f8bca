"""One demuxer per camera stream, fanned out to several consumers inside the process.

Cheap cameras allow two or three RTSP sessions in all, so the recorder, the motion analyser and a
live view must not each open the stream: `pump` reads it once (a blocking loop for a thread of its
own) and `StreamFanout.publish` hands every packet to each `Subscription`.

Back-pressure: each subscription has a bounded queue, and `publish` never waits. When a consumer
falls behind and its queue is full, the new packet is dropped for that consumer only (counted in
`Subscription.dropped`), and so is everything after it up to the next keyframe: a packet missing
from the middle of a GOP would make the rest of that GOP undecodable, so the consumer rather sees
a clean gap and resumes at a picture it can decode. The demux thread, and so every other consumer,
is never slowed down by a slow one. Session markers (`SessionEnded`) are never dropped.

An inline consumer (`attach`) is called by the demux thread itself, after the subscriptions have
the packet: for the one consumer of a stream that nothing else waits on (the analyser of a sub
stream), which then saves a thread hand-off per packet and must keep up or skip by itself.

Packets are shared, not copied: consumers must treat `CapturedPacket.packet` as read-only (muxing
changes a packet's timestamps, so the recorder muxes `av.Packet(cp.packet)`, a new packet
referring to the same bytes), and read timestamps from the `CapturedPacket` fields.

Wall-clock capture time. Cameras stamp packets with a media clock (RTP, 90 kHz for video) that has
an arbitrary origin, so every packet also carries `capture_utc`, a UTC time on our clock, which
segment start/end times in the index come from. `CaptureClock` anchors the media clock to the
wall clock at connect (first packet's arrival time, plus the pts delta for later packets), then
keeps the anchor honest:

* A packet can never be captured after it arrived. At connect a camera (and FFmpeg's stream
  probing) delivers up to a GOP of buffered packets in a burst, so the first packet's arrival is
  later than its capture; the first packet that arrives "early" by the anchor moves the anchor back
  to it. The anchor thus settles on the least-delayed packet, within network latency.
* If packets arrive more than `MAX_CAPTURE_LAG_S` after their anchored time, the anchor is reset to
  the current packet: the camera's clock runs slow against ours, its timestamps jumped (a camera
  reboot or settings change mid-session), or our own clock was stepped by NTP. A camera clock that
  runs fast is corrected continuously by the first rule.

The media timestamps themselves are left untouched: the recorder rebases them per segment, so a
file's internal timeline stays smooth even when the wall-clock anchor is adjusted.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Final, TypeAlias

import av
import av.error
from av.container import InputContainer
from av.video.stream import VideoStream

from appliance.redact import mask_text

log = logging.getLogger(__name__)

DEFAULT_QUEUE_PACKETS: Final = 300
"""Packets a subscription holds before it drops: 20 s of a 15 fps stream, 10 s at 30 fps."""
MAX_CAPTURE_LAG_S: Final = 2.0
"""How late (by the anchor) a packet may arrive before the wall-clock anchor is reset. Well above
network jitter and a GOP burst at connect, well below what would misplace footage noticeably."""
OPEN_TIMEOUT_S: Final = 10.0
READ_TIMEOUT_S: Final = 5.0
"""Socket timeouts of FFmpeg's RTSP client: a silent camera fails the read (as TimeoutError, after
about twice READ_TIMEOUT_S: the client retries once) instead of hanging.
(ingest.py has the same values for its own reader, until it publishes into a fanout with `pump`.)"""
RTSP_OPTIONS: Final = {"rtsp_transport": "tcp", "timeout": str(int(READ_TIMEOUT_S * 1_000_000))}
"""TCP interleaving: UDP loses packets on busy Wi-Fi and through NAT, and a lost packet is lost
footage. `timeout` is FFmpeg's socket read timeout in microseconds."""

Clock = Callable[[], datetime]
VideoPacket: TypeAlias = "av.Packet[VideoStream]"


def utc_now() -> datetime:
    return datetime.now(UTC)


class StreamParams:
    """What a consumer needs to know about a connected stream to mux or decode its packets.

    `template` is a copy of the input stream's codec parameters (SPS/PPS or VPS/SPS/PPS in
    `extradata`, size, time base) that does not belong to the input container: the demuxer closes
    its container when the camera disconnects, while a recorder may still be creating a segment
    from these parameters in another thread. Pass it to `add_stream_from_template(..., opaque=True)`.
    """

    def __init__(self, stream: VideoStream) -> None:
        ctx = stream.codec_context
        self.codec: str = ctx.name
        self.width: int = ctx.width
        self.height: int = ctx.height
        self.time_base: Fraction = stream.time_base or Fraction(1, 90_000)
        self.extradata: bytes = bytes(ctx.extradata or b"")
        # An output container that is never written holds the copy; it lives as long as `template`.
        holder = av.open(io.BytesIO(), "w", format="mp4")
        self.template: VideoStream = holder.add_stream_from_template(stream, opaque=True)

    def __repr__(self) -> str:
        return f"StreamParams({self.codec} {self.width}x{self.height}, time_base={self.time_base})"


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """A demuxed packet of one stream, with its timestamps copied out and its wall-clock time."""

    packet: VideoPacket
    session: int
    """Counts connections of this fanout: a new value means a new connection (new timeline)."""
    params: StreamParams
    pts: int
    dts: int | None
    duration: int | None
    time_base: Fraction
    keyframe: bool
    capture_utc: datetime

    def seconds(self, ticks: int) -> float:
        return float(ticks * self.time_base)


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The connection `session` ended (camera gone, read error, or shutdown)."""

    session: int
    reason: str


Item = CapturedPacket | SessionEnded
InlineConsumer = Callable[[Item], None]


class CaptureClock:
    """Wall-clock capture time of a stream's packets from their pts (see the module docstring)."""

    def __init__(self, time_base: Fraction, max_lag_s: float = MAX_CAPTURE_LAG_S) -> None:
        self.time_base = time_base
        self.max_lag = timedelta(seconds=max_lag_s)
        self._anchor_pts: int | None = None
        self._anchor_utc = datetime.min.replace(tzinfo=UTC)
        self.resyncs = 0
        """How often the anchor was reset for a late packet (not counting connect)."""

    def capture_time(self, pts: int, arrival: datetime) -> datetime:
        if self._anchor_pts is None:
            self._anchor(pts, arrival)
            return arrival
        at = self._anchor_utc + timedelta(seconds=float((pts - self._anchor_pts) * self.time_base))
        if at > arrival:
            self._anchor(pts, arrival)
            return arrival
        if arrival - at > self.max_lag:
            self.resyncs += 1
            log.info(
                "capture clock resynchronised: packet arrived %.1f s after its anchored time",
                (arrival - at).total_seconds(),
            )
            self._anchor(pts, arrival)
            return arrival
        return at

    def _anchor(self, pts: int, arrival: datetime) -> None:
        self._anchor_pts, self._anchor_utc = pts, arrival


@dataclass
class _Pending:
    items: deque[Item] = field(default_factory=deque)
    packets: int = 0


class Subscription:
    """One consumer's bounded queue of a stream's packets. `get` is for the consumer's thread."""

    def __init__(self, name: str, max_packets: int) -> None:
        if max_packets < 1:
            raise ValueError(f"a subscription must hold at least one packet, got {max_packets}")
        self.name = name
        self.max_packets = max_packets
        self.delivered = 0
        self.dropped = 0
        """Packets this consumer lost because it fell behind (including the rest of each GOP)."""
        self._pending = _Pending()
        self._cond = threading.Condition()
        self._skip_to_keyframe = False
        self._closed = False

    def _offer(self, item: Item) -> None:
        with self._cond:
            if self._closed:
                return
            if isinstance(item, CapturedPacket):
                if self._skip_to_keyframe and not item.keyframe:
                    self.dropped += 1
                    return
                if self._pending.packets >= self.max_packets:
                    self.dropped += 1
                    self._skip_to_keyframe = True
                    return
                self._skip_to_keyframe = False
                self._pending.packets += 1
            else:
                # A new connection starts with a keyframe anyway; the gap is over.
                self._skip_to_keyframe = False
            self._pending.items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Item | None:
        """The next packet or session marker; None after `timeout` seconds, or once closed."""
        with self._cond:
            if not self._pending.items and not self._closed:
                self._cond.wait(timeout)
            if not self._pending.items:
                return None
            item = self._pending.items.popleft()
            if isinstance(item, CapturedPacket):
                self._pending.packets -= 1
                self.delivered += 1
            return item

    def get_all(self, timeout: float | None = None) -> list[Item]:
        """Every waiting packet and marker, waiting up to `timeout` seconds for the first one: a
        consumer that tolerates delay takes its packets in batches, one wake-up per batch."""
        with self._cond:
            if not self._pending.items and not self._closed:
                self._cond.wait(timeout)
            items = list(self._pending.items)
            self._pending.items.clear()
            self.delivered += self._pending.packets
            self._pending.packets = 0
            return items

    @property
    def backlog(self) -> int:
        return self._pending.packets

    def wake(self) -> None:
        """Make a consumer blocked in `get` return None now (to notice that it should stop)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop receiving; a consumer blocked in `get` wakes up with None."""
        with self._cond:
            self._closed = True
            self._pending.items.clear()
            self._pending.packets = 0
            self._cond.notify_all()


class StreamFanout:
    """Distributes one stream's packets to its subscribers.

    `begin_session`, `publish` and `end_session` are called by the one thread that demuxes the
    stream; `subscribe` and `unsubscribe` from any thread.
    """

    def __init__(self, camera_id: str, stream: str = "main", clock: Clock = utc_now) -> None:
        self.camera_id = camera_id
        self.stream = stream
        self._clock = clock
        self._subs: tuple[Subscription, ...] = ()
        self._inline: tuple[InlineConsumer, ...] = ()
        self._lock = threading.Lock()
        self.session = 0
        self.params: StreamParams | None = None
        self._capture: CaptureClock | None = None
        self._last_pts: int | None = None
        self._last_duration: int | None = None
        self._held: tuple[VideoPacket, datetime] | None = None
        self.published = 0
        self.bytes_published = 0
        self.last_media_s: float | None = None
        """Media time of the newest packet: with `published` and `bytes_published`, the stream's
        fps and bitrate in its own time (arrival times burst at connect)."""
        self.unplaced = 0
        """Packets dropped for everyone because they had no timestamp to place them by."""

    def subscribe(self, name: str, max_packets: int = DEFAULT_QUEUE_PACKETS) -> Subscription:
        sub = Subscription(name, max_packets)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
        sub.close()

    def attach(self, consumer: InlineConsumer) -> None:
        """Call `consumer` from the demux thread with every packet and session end; it must not
        raise, and whatever time it takes delays the reading of the stream."""
        with self._lock:
            self._inline = (*self._inline, consumer)

    def detach(self, consumer: InlineConsumer) -> None:
        with self._lock:
            self._inline = tuple(c for c in self._inline if c is not consumer)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subs

    def begin_session(self, stream: VideoStream) -> StreamParams:
        """A (re)connection: new codec parameters and a new wall-clock anchor."""
        self.session += 1
        self.params = StreamParams(stream)
        self._capture = CaptureClock(self.params.time_base)
        self._last_pts = self._last_duration = None
        self._forget_held()
        return self.params

    def publish(self, packet: VideoPacket, arrival: datetime | None = None) -> CapturedPacket | None:
        """Hand a demuxed packet to every subscriber (never blocks); returns what was sent."""
        if self.params is None:
            raise RuntimeError("publish() before begin_session()")
        if packet.size == 0:
            return None  # FFmpeg's end-of-stream flush packet
        arrival = arrival or self._clock()
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            if self._last_pts is not None and self._last_duration:
                pts = self._last_pts + self._last_duration
            elif self._held is None and packet.duration:
                # A session's first packet, often its first keyframe, may come without a timestamp
                # (FFmpeg's RTP depacketiser before the first RTCP report): it is placed a frame
                # before the next packet, rather than losing a whole GOP at every connect.
                self._held = (packet, arrival)
                return None
            else:
                self.unplaced += 1
                return None
        if self._held is not None:
            held, held_arrival = self._held
            self._held = None
            self._send(held, pts - (held.duration or 0), held_arrival)
        return self._send(packet, pts, arrival)

    def _send(self, packet: VideoPacket, pts: int, arrival: datetime) -> CapturedPacket:
        assert self.params is not None and self._capture is not None
        duration = packet.duration or None
        if self._last_pts is not None and duration is None and pts > self._last_pts:
            duration = pts - self._last_pts
        self._last_pts, self._last_duration = pts, duration or self._last_duration
        captured = CapturedPacket(
            packet=packet,
            session=self.session,
            params=self.params,
            pts=pts,
            dts=packet.dts,
            duration=duration,
            time_base=packet.time_base or self.params.time_base,
            keyframe=packet.is_keyframe,
            capture_utc=self._capture.capture_time(pts, arrival),
        )
        self.published += 1
        self.bytes_published += packet.size
        self.last_media_s = float(pts * captured.time_base)
        for sub in self._subs:
            sub._offer(captured)
        for consume in self._inline:
            consume(captured)
        return captured

    def _forget_held(self) -> None:
        if self._held is not None:
            self._held = None
            self.unplaced += 1

    def end_session(self, reason: str) -> None:
        self._forget_held()
        marker = SessionEnded(self.session, reason)
        for sub in self._subs:
            sub._offer(marker)
        for consume in self._inline:
            consume(marker)


def pump(url: str, fanout: StreamFanout, stop: threading.Event) -> None:
    """Blocking: open the stream, publish its video packets until `stop` is set; raises on failure.

    Subscribers always see a session that began also end (`SessionEnded`), however it ends. Run it
    in a thread of its own, and around it whatever reconnect policy the caller has.
    """
    began = False
    reason = "stopped"
    try:
        # Reads are bounded by FFmpeg's own socket timeout (RTSP_OPTIONS), not PyAV's read timeout:
        # PyAV checks its timeout in an interrupt callback that takes the GIL, and FFmpeg calls
        # it many times per packet, so every stream thread would contend for the GIL constantly.
        with av.open(url, options=RTSP_OPTIONS, timeout=(OPEN_TIMEOUT_S, None)) as container:
            assert isinstance(container, InputContainer)
            video = container.streams.video[0]
            fanout.begin_session(video)
            began = True
            for packet in container.demux(video):
                if stop.is_set():
                    return
                fanout.publish(packet)
            reason = "the camera ended the stream"
    except BaseException as exc:
        # FFmpeg's messages may echo the URL, credentials included.
        reason = mask_text(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if began:
            fanout.end_session(reason)
