"""One camera, end to end: streams in, segments and events out.

    main stream ──pump──► fanout ──► recorder ──► segments (index, evidence chain, motion heatmap)
                                 └─► analyser, renditions (when there is no sub stream)
    sub stream  ──pump──► fanout ──► analyser ──► events (store, bus, clip) and tamper events
                                 └─► renditions (H.264 copies of an H.265 camera's events, made live)

Each stream is opened once (cheap cameras allow two to four RTSP sessions) and every piece is a
separate supervised component, so a crashed analyser restarts without a gap in the recording.

The events table is written through an `EventJournal`: a database that refuses a write for a while
(SQLite locked past its busy timeout, a PostgreSQL connection lost) delays the camera's event rows,
in order, rather than crashing the analyser. Clips are made by tasks of the pipeline; at a stop they
are waited for (`CLIP_STOP_S`), cut from the footage recorded up to the recorder's stop, and those
an earlier run did not make are made at the next start (`_make_missing_clips`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError, IntegrityError

from appliance.bus import EventBus
from appliance.cameras.analyser import QUEUE_PACKETS as ANALYSER_QUEUE_PACKETS
from appliance.cameras.analyser import Analyser, Analysis
from appliance.cameras.clips import ClipInfo, ClipService
from appliance.cameras.events import (
    EndReason,
    EventEnded,
    EventStarted,
    EventTracker,
    PeakChanged,
    event_id_for,
)
from appliance.cameras.fanout import StreamFanout
from appliance.cameras.ingest import ReconnectPolicy, run_stream
from appliance.cameras.messages import (
    CameraOffline,
    CameraOnline,
    EventClosed,
    EventOpened,
    TamperCleared,
    TamperDetected,
)
from appliance.cameras.motion import MotionDetector, MotionHeatmap, MotionResult
from appliance.cameras.pressure import RecordingPressure
from appliance.cameras.reconcile import UnplayableFile, examine
from appliance.cameras.recorder import Recorder
from appliance.cameras.renditions import LiveRenditions, Transcoder
from appliance.cameras.status import CameraState, StatusBoard
from appliance.cameras.tamper import TamperDetector, TamperEvent
from appliance.cameras.uncancelled import uncancelled
from appliance.config import CameraConfig
from appliance.evidence.ledger import EvidenceLedger
from appliance.redact import mask_text
from appliance.storage.events import DuplicateEvent, EventStore, UnknownEvent, boxes_from_json
from appliance.storage.footage import FootageStore, clip_key
from appliance.storage.models import Event
from appliance.storage.segments import SegmentIndex, SegmentInfo
from appliance.supervisor import StopStage
from appliance.threads import start_thread

log = logging.getLogger(__name__)

Component = Callable[[], Awaitable[None]]

OFFLINE_POLL_S: Final = 1.0
ANALYSER_STOP_S: Final = 5.0
"""How long a stopping analyser may take to finish the frame in hand and close its events."""
RENDITION_POLL_S: Final = 1.0
"""How often a camera whose main stream is not (yet) known to be H.265 is looked at again."""
RENDITION_STOP_S: Final = 5.0
"""How long stopping renditions may take to publish those whose end was reached."""
CHAIN_ATTEMPTS: Final = 3
CHAIN_RETRY_S: Final = 0.5
"""Pause before the second append of a segment to the evidence chain (doubled before the third)."""
MOTION_MEMORY_S: Final = 120.0
"""Analysed results kept to build each finished segment's heatmap: a segment is at most 60 s,
and its hook runs seconds after it ends."""
EVENT_RETRY_S: Final = 0.5
"""Pause before the events table is tried again after it refused a write; doubled after each
refusal up to EVENT_RETRY_MAX_S, and kept at this while the pipeline stops."""
EVENT_RETRY_MAX_S: Final = 5.0
MAX_PENDING_WRITES: Final = 60
"""Event writes one camera keeps while the database refuses them: some 20 events (a start and a
peak hold a snapshot and a thumbnail each, ~100 KB), minutes of a busy camera."""
CLIP_STOP_S: Final = 3.0
"""How long a stopping pipeline waits for the clips of its last events, from the recorders' stage
on. The default shutdown budget is 8 s and the stage before takes at most half of it; a clip not
made by then is made at the next start."""


@dataclass(frozen=True)
class PipelineDeps:
    """What the camera pipelines share."""

    store: FootageStore
    index: SegmentIndex
    events: EventStore
    ledger: EvidenceLedger
    clips: ClipService
    bus: EventBus
    board: StatusBoard
    timezone: ZoneInfo
    segment_seconds: float
    min_free_bytes: int
    transcoder: Transcoder
    pressure: RecordingPressure = field(default_factory=RecordingPressure)
    """Shared by every camera: a recorder that falls behind makes all analysers give way."""


class CameraPipeline:
    def __init__(self, cam: CameraConfig, deps: PipelineDeps, policy: ReconnectPolicy | None = None) -> None:
        self.cam = cam
        self.deps = deps
        self.policy = policy or ReconnectPolicy()
        self.main = StreamFanout(cam.id, "main")
        self.sub = StreamFanout(cam.id, "sub") if cam.sub_url else None
        self._recent: deque[tuple[datetime, MotionResult]] = deque()
        self._clip_tasks: set[asyncio.Task[None]] = set()
        self._tamper_events: dict[str, str] = {}
        self._offline_event: str | None = None
        self._renditions: LiveRenditions | None = None
        self._journal = EventJournal(cam.id)
        self._created = datetime.now(UTC)
        """Events that ended before this are an earlier run's: their missing clips are made at start."""
        self._footage_final = asyncio.Event()
        """Set once the recorder stopped: the clips still waiting for footage are made from what there is."""
        self._analyser_idle = asyncio.Event()
        """Clear while an analyser runs: set once it handed over the events it closed on its way out."""
        self._analyser_idle.set()

    def components(self) -> list[tuple[str, Component, StopStage]]:
        """The supervised pieces, each with its shutdown stage: the recorder outlives the pumps, so
        that the end of the stream finishes its last segment and the CPU is free to index it."""
        cid = self.cam.id
        board = self.deps.board
        main = partial(run_stream, self.cam, self.cam.main_url, self.main, board, self.policy)
        parts: list[tuple[str, Component, StopStage]] = [
            (f"camera:{cid}:main", main, StopStage.SOURCES),
            (f"camera:{cid}:recorder", self._record, StopStage.RECORDERS),
            (f"camera:{cid}:analyser", self._analyse, StopStage.SOURCES),
            (f"camera:{cid}:health", self._watch_offline, StopStage.SOURCES),
            # With the recorders: an event closed at shutdown still gets its rendition's tail.
            (f"camera:{cid}:renditions", self._render, StopStage.RECORDERS),
            # With the recorders too: the clips of the last events are cut once recording stopped.
            (f"camera:{cid}:clips", self._clips, StopStage.RECORDERS),
        ]
        if self.sub is not None and self.cam.sub_url:
            sub = partial(run_stream, self.cam, self.cam.sub_url, self.sub, None, self.policy)
            parts.insert(1, (f"camera:{cid}:sub", sub, StopStage.SOURCES))
        return parts

    # --------------------------------------------------------------- recording ---

    async def _record(self) -> None:
        sub = self.main.subscribe("recorder")
        recorder = Recorder(
            self.cam.id,
            sub,
            self.deps.store,
            self.deps.index,
            segment_seconds=self.deps.segment_seconds,
            min_free_bytes=self.deps.min_free_bytes,
            on_segment_finalised=self._segment_finalised,
            pressure=self.deps.pressure,
        )
        self._footage_final.clear()
        try:
            await recorder.run()
        except asyncio.CancelledError:
            # run() finished and indexed the last segment first: no more footage comes.
            self._footage_final.set()
            raise
        finally:
            self.main.unsubscribe(sub)

    async def _segment_finalised(self, info: SegmentInfo) -> None:
        await record_segment(self.deps.ledger, info)
        heatmap = MotionHeatmap()
        moved = False
        for t, result in self._recent:
            if info.start_utc <= t < info.end_utc:
                heatmap.add(result)
                moved = moved or result.motion
        await self.deps.index.mark_motion(info.key, moved, heatmap.to_bytes())

    # -------------------------------------------------------------- renditions ---

    def _h265(self) -> bool:
        params = self.main.params
        return params is not None and params.codec == "hevc"

    async def _render(self) -> None:
        """H.264 renditions of this camera's events while they happen, once its main stream is H.265."""
        # The stream's pump thread sets the parameters at connect; there is nothing to wait on.
        while not self._h265():  # noqa: ASYNC110
            await asyncio.sleep(RENDITION_POLL_S)
        loop = asyncio.get_running_loop()
        fanout = self.sub or self.main
        sub = fanout.subscribe("renditions")
        events = self.cam.events
        renditions = LiveRenditions(
            self.cam.id,
            sub,
            self.deps.store,
            self.deps.transcoder,
            pre_roll_s=events.pre_roll_s,
            hold_s=max(0.0, events.merge_gap_s - events.post_roll_s),
            max_open_s=events.max_event_s + events.post_roll_s + events.merge_gap_s + RENDITION_STOP_S,
            wanted=self._h265,
        )
        ended: asyncio.Future[str | None] = loop.create_future()
        body = partial(_run_then_settle, renditions.run, loop, ended)
        start_thread(body, f"renditions-{self.cam.id}")
        self._renditions = renditions
        try:
            await asyncio.shield(ended)
            raise RuntimeError(f"the renditions thread of camera {self.cam.id!r} ended ({ended.result()}); see the log")
        finally:
            self._renditions = None
            renditions.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), RENDITION_STOP_S)
            fanout.unsubscribe(sub)

    def _open_rendition(self, action: EventStarted) -> None:
        if self._renditions is not None:
            key = clip_key(self.cam.id, action.event_id, action.start, rendition=True)
            self._renditions.open(action.event_id, key, action.clip_from)

    def _close_rendition(self, action: EventEnded) -> asyncio.Future[ClipInfo | None] | None:
        if self._renditions is None:
            return None
        return asyncio.wrap_future(self._renditions.close(action.event_id, action.clip_to))

    # ---------------------------------------------------------------- analysis ---

    async def _analyse(self) -> None:
        loop = asyncio.get_running_loop()
        fanout = self.sub or self.main
        # A sub stream is analysed in its demux thread; the main stream's must never wait (analyser.py).
        inline = self.sub is not None
        sub = None if inline else fanout.subscribe("analyser", ANALYSER_QUEUE_PACKETS)
        queue: asyncio.Queue[Analysis] = asyncio.Queue()
        cam = self.cam
        analyser = Analyser(
            cam.id,
            sub,
            MotionDetector(cam.motion, zones=cam.zones, masks=cam.masks),
            TamperDetector(),
            EventTracker(cam.id, cam.events.settings(), schedule=cam.events.schedule(), tz=self.deps.timezone),
            partial(_to_loop, loop, queue),
            self.deps.pressure,
        )
        ended: asyncio.Future[str | None] = loop.create_future()
        body = partial(_run_then_settle, analyser.run_ticks if inline else analyser.run, loop, ended)
        # Its queue gets a last item when the thread ends: one that ends unasked (a bug in the
        # analysis) fails this component, which the supervisor restarts, instead of leaving the
        # camera recorded but unwatched.
        ended.add_done_callback(lambda _: queue.put_nowait(_ANALYSER_ENDED))
        offer = analyser.offer
        if inline:
            fanout.attach(offer)
        start_thread(body, f"analyser-{cam.id}")
        self._analyser_idle.clear()
        try:
            while (a := await queue.get()) is not _ANALYSER_ENDED:
                await uncancelled(self._handle(a))
            raise RuntimeError(f"the motion analysis of camera {cam.id!r} stopped ({ended.result()}); see the log")
        finally:
            analyser.stop()
            if sub is None:
                fanout.detach(offer)
            else:
                fanout.unsubscribe(sub)
            try:
                # Awaited on the loop, not joined in the default executor: at shutdown every camera
                # waits at once, and the executor's few workers are needed for the recorders' files.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), ANALYSER_STOP_S)
                while not queue.empty():  # the events the tracker closed at shutdown
                    if (a := queue.get_nowait()) is not _ANALYSER_ENDED:
                        await self._handle(a)
            finally:
                self._analyser_idle.set()

    async def _handle(self, a: Analysis) -> None:
        if a.result is not None and a.result.motion:
            self._recent.append((a.t, a.result))
        horizon = a.t - timedelta(seconds=MOTION_MEMORY_S)
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        events = self.deps.events
        for action in a.actions:
            if isinstance(action, EventStarted):
                self._open_rendition(action)
                start = partial(events.started, action, snapshot=a.snapshot, thumbnail=a.thumbnail)
                await self._journal.write(action.event_id, "start", start)
                boxes = tuple((b.x0, b.y0, b.x1, b.y1) for b in a.result.boxes) if a.result is not None else ()
                self.deps.bus.publish(
                    EventOpened(
                        self.cam.id,
                        action.event_id,
                        "motion",
                        action.start,
                        action.armed,
                        a.snapshot,
                        a.thumbnail,
                        boxes,
                    )
                )
            elif isinstance(action, PeakChanged):
                peak = partial(events.peak, action, snapshot=a.snapshot, thumbnail=a.thumbnail)
                await self._journal.write(action.event_id, "peak", peak)
            elif isinstance(action, EventEnded):
                stored = await self._journal.write(action.event_id, "end", partial(events.ended, action))
                self.deps.bus.publish(
                    EventClosed(self.cam.id, action.event_id, "motion", action.start, action.end, str(action.reason))
                )
                clip = self._clip(action, self._close_rendition(action), stored)
                task = asyncio.create_task(clip, name=f"clip-{action.event_id}")
                self._clip_tasks.add(task)
                task.add_done_callback(self._clip_tasks.discard)
        for tamper in a.tamper:
            await self._tamper(tamper, a.t, a.snapshot)

    async def _tamper(self, event: TamperEvent, t: datetime, snapshot: bytes | None) -> None:
        kind = f"tamper_{event.kind}"
        if event.started:
            event_id = await self._open_health(kind, t, snapshot)
            self._tamper_events[kind] = event_id
            self.deps.bus.publish(TamperDetected(self.cam.id, event_id, kind, t, snapshot))
        elif kind in self._tamper_events:
            event_id = self._tamper_events.pop(kind)
            await self._close_health(event_id, t, "cleared")
            self.deps.bus.publish(TamperCleared(self.cam.id, event_id, kind, t))

    async def _open_health(self, kind: str, t: datetime, snapshot: bytes | None = None) -> str:
        """A health event (offline, tamper) as an events row: no clip, always alerting."""
        event_id = f"{event_id_for(self.cam.id, t)}-{kind}"
        start = EventStarted(event_id, self.cam.id, t, t, armed=True)
        await self._journal.write(event_id, "start", partial(self.deps.events.started, start, kind, snapshot))
        return event_id

    async def _close_health(self, event_id: str, t: datetime, reason: str) -> None:
        await self._journal.write(event_id, "close", partial(self.deps.events.close, event_id, t, reason))

    # ------------------------------------------------------------------- clips ---

    async def _clip(
        self, action: EventEnded, rendition: asyncio.Future[ClipInfo | None] | None, stored: asyncio.Future[bool]
    ) -> None:
        """The clip of an event that ended in this run, once its row is written: the clip goes into it."""
        if await stored:
            await self.deps.clips.on_event_ended(action, rendition, self._footage_final)
        elif rendition is not None:
            # The event has no row to record a clip in (its loss is logged).
            await self.deps.clips.discard_rendition(rendition)

    async def _clips(self) -> None:
        """The clips earlier runs left unmade; at a stop, the clips of this run's last events."""
        try:
            await self._make_missing_clips()
            # This run's clips are the tasks `_handle` starts: nothing more to do until the stop.
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self._finish_clips()
            raise

    async def _finish_clips(self) -> None:
        """Wait, up to CLIP_STOP_S, for the clips of the events this run ended, those the analyser
        closed on its way out included; they are cut from the footage up to the recorder's stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLIP_STOP_S
        self._journal.hurry()  # a clip waits for its event's row
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._analyser_idle.wait(), CLIP_STOP_S)
        waits: set[asyncio.Future[Any]] = {*self._clip_tasks, *self._journal.waiting()}
        if waits:
            await asyncio.wait(waits, timeout=max(0.0, deadline - loop.time()))
        self._journal.abandon()
        if self._clip_tasks:
            # Left running rather than cancelled: a clip cancelled half-way through its database
            # writes could hold SQLite's write lock until the process ends.
            log.warning(
                "%d event clip(s) not made within %.0f s of the stop; they are made at the next start",
                len(self._clip_tasks),
                CLIP_STOP_S,
                extra={"camera": self.cam.id, "events": sorted(t.get_name() for t in self._clip_tasks)},
            )

    async def _make_missing_clips(self) -> None:
        """Clips of events that ended in an earlier run without one (the appliance stopped before it
        was made, a crash left the event open, or making it failed), from the footage left. Events
        that ended more than `events_days` ago are retention's: their clips were deleted on purpose."""
        cid = self.cam.id
        since = self._created - timedelta(days=self.cam.retention.events_days)
        final = asyncio.Event()
        final.set()  # recorded in an earlier run: there is no footage to wait for
        for row in await self.deps.events.without_clip(cid, since, self._created):
            action = _ended_of(row)
            if not await self.deps.index.list_range(cid, action.clip_from, action.clip_to):
                continue  # no footage left (or none was recorded): nothing to make a clip of
            try:
                if await self._adopt_clip_file(action):
                    continue
            except (UnplayableFile, OSError) as exc:
                log.error(
                    "event %s: a clip file from an earlier run is in the way and unreadable (%s); move it "
                    "away and restart to have the clip made again",
                    action.event_id,
                    exc,
                    extra={"camera": cid, "event_id": action.event_id},
                )
                continue
            log.info("making the clip an earlier run left unmade", extra={"camera": cid, "event_id": action.event_id})
            await self.deps.clips.on_event_ended(action, footage_final=final)

    async def _adopt_clip_file(self, action: EventEnded) -> bool:
        """A clip an earlier run published but did not record in its event (it stopped in between):
        kept if the evidence chain holds it (True: the event now names it), else deleted (it never
        was evidence) so that it is made again. False when there is no such file."""
        store = self.deps.store
        key = clip_key(action.camera_id, action.event_id, action.start)
        try:
            await asyncio.to_thread(store.size, key)
        except FileNotFoundError:
            return False
        if key not in await self.deps.ledger.recorded_keys(action.camera_id):
            await asyncio.to_thread(store.delete, key)
            return False
        found, size, sha256 = await asyncio.to_thread(examine, store, key)
        clip = ClipInfo(key, sha256, size, found.duration_s, action.clip_from, found.codec)
        await self.deps.events.clip_ready(action.event_id, clip)
        return True

    # ------------------------------------------------------------------ health ---

    async def _watch_offline(self) -> None:
        """An 'offline' event once the camera has been unreachable for `offline_after_s`."""
        while True:
            await asyncio.sleep(OFFLINE_POLL_S)
            await uncancelled(self._check_offline())

    async def _check_offline(self) -> None:
        status = self.deps.board.get(self.cam.id)
        now = datetime.now(UTC)
        if status.state is CameraState.ONLINE:
            if self._offline_event is not None:
                await self._close_health(self._offline_event, now, "back_online")
                self.deps.bus.publish(CameraOnline(self.cam.id, self._offline_event, now))
                self._offline_event = None
        elif (
            status.state is not CameraState.DISABLED
            and self._offline_event is None
            and (now - status.since).total_seconds() >= self.cam.offline_after_s
        ):
            self._offline_event = await self._open_health("offline", status.since)
            self.deps.bus.publish(CameraOffline(self.cam.id, self._offline_event, status.since))


async def record_segment(ledger: EvidenceLedger, info: SegmentInfo) -> None:
    """A finished segment goes into its camera's evidence chain at once. A database that refuses
    the write for a moment (another writer held it past the busy timeout, a connection lost) is
    asked again; what is still left out is appended by reconciliation at the next start."""
    for attempt in range(1, CHAIN_ATTEMPTS + 1):
        try:
            await ledger.append(info.camera_id, "segment", info.key, info.sha256, info.size_bytes, info.start_utc)
            return
        except (DBAPIError, OSError) as exc:
            if attempt == CHAIN_ATTEMPTS or not _transient(exc):
                raise
            log.warning(
                "evidence chain append failed; retrying",
                extra={"camera": info.camera_id, "key": info.key, "error": _db_error(exc), "attempt": attempt},
            )
            await asyncio.sleep(CHAIN_RETRY_S * attempt)


def _transient(exc: BaseException) -> bool:
    """A database failure that passes by itself (locked, connection lost, server restarting), as
    opposed to a write the database will never take (a constraint)."""
    return isinstance(exc, OSError) or (isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError))


def _db_error(exc: BaseException) -> str:
    """The driver's own message: a DBAPIError's text also quotes the statement and its parameters."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return str(orig if orig is not None else exc)


@dataclass
class _Write:
    event_id: str
    what: str
    """"start", "peak", "end" or "close": what the log says was lost."""
    run: Callable[[], Awaitable[object]]
    done: asyncio.Future[bool]
    """True once written; False if given up."""


class EventJournal:
    """One camera's writes to the events table, in order, through a database that refuses them for
    a while.

    A write is made at once when nothing waits. When the database refuses it, it and every later
    write wait in order, retried in the background after a growing pause, and the caller goes on
    (the analyser with its next frames): a peak or an end never reaches the table before its
    event's start, and an event whose start was refused gets its row late rather than never. Of
    waiting peaks only the newest is kept. Past `max_pending` waiting writes the oldest event's are
    given up; `abandon` (at a stop) gives up the rest. Each event given up is logged once, as an
    error saying what was lost.
    """

    def __init__(self, camera_id: str, max_pending: int = MAX_PENDING_WRITES) -> None:
        self.camera_id = camera_id
        self.max_pending = max_pending
        self._pending: deque[_Write] = deque()
        self._in_flight: _Write | None = None
        self._flushing = False
        self._retrier: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._given_up: set[str] = set()
        """Events whose writes were given up while they were open: their peaks and close go too."""

    def waiting(self) -> list[asyncio.Future[bool]]:
        """Whether each write now waiting is made, as they are settled."""
        return [w.done for w in self._pending]

    async def write(self, event_id: str, what: str, run: Callable[[], Awaitable[object]]) -> asyncio.Future[bool]:
        """Make the write `run` (one of `_Write.what`) of event `event_id`, or queue it behind those
        waiting; returns once it is made or queued, with a future of whether it was made."""
        op = _Write(event_id, what, run, asyncio.get_running_loop().create_future())
        if event_id in self._given_up:
            if what in ("end", "close"):  # the event is over
                self._given_up.discard(event_id)
            if what != "end":  # a peak or a close would find no row; an end makes a whole one
                _made(op, False)
                return op.done
        last = self._pending[-1] if self._pending else None
        if (
            what == "peak"
            and last is not None
            and last is not self._in_flight
            and (last.event_id, last.what) == (event_id, "peak")
        ):
            _made(last, False)
            self._pending[-1] = op
        else:
            self._pending.append(op)
        if len(self._pending) > self.max_pending:
            oldest = next(w for w in self._pending if w is not self._in_flight)
            self._give_up(oldest.event_id, f"more than {self.max_pending} writes were waiting for the database")
        if not self._flushing and self._retrier is None and not await self._flush():
            self._retrier = asyncio.create_task(self._retry(), name=f"event-writes:{self.camera_id}")
        return op.done

    def hurry(self) -> None:
        """The pipeline is stopping: try the waiting writes now, then at short pauses."""
        self._stopping = True
        self._wake.set()

    def abandon(self) -> None:
        """Give up every waiting write (the pipeline stops); each event is logged once."""
        if self._retrier is not None:
            self._retrier.cancel()
            self._retrier = None
        self._in_flight = None
        self._stopping = False
        while self._pending:
            self._give_up(self._pending[0].event_id, "the appliance stopped while the database refused them")

    async def _flush(self) -> bool:
        """Make the waiting writes in order; False when the database refused one (it stays first)."""
        self._flushing = True
        try:
            while self._pending:
                op = self._pending[0]
                self._in_flight = op
                try:
                    made = await self._make(op)
                except (DBAPIError, OSError) as exc:  # transient: `_make` handles the rest
                    if self._retrier is None:
                        log.warning(
                            "the events table refuses writes (%s); %d wait and are retried: check that the "
                            "database is reachable (PostgreSQL server, network) and not locked by another "
                            "program (SQLite)",
                            _db_error(exc),
                            len(self._pending),
                            extra={"camera": self.camera_id, "event_id": op.event_id},
                        )
                    return False
                finally:
                    self._in_flight = None
                if self._pending and self._pending[0] is op:
                    self._pending.popleft()
                _made(op, made)
            return True
        finally:
            self._flushing = False

    async def _make(self, op: _Write) -> bool:
        """One try of a write; whether it was made. Raises what the database raised, if transient."""
        where = {"camera": self.camera_id, "event_id": op.event_id}
        try:
            await op.run()
        except DuplicateEvent:
            # The try before went through but its answer was lost, or the clock was set back.
            log.warning("event %s has a row already; its updates go to that row", op.event_id, extra=where)
        except UnknownEvent:
            log.warning(
                "the %s of event %s was dropped: the event has no open row (its start was lost, see above)",
                op.what,
                op.event_id,
                extra=where,
            )
            return False
        except (DBAPIError, OSError) as exc:
            if _transient(exc):
                raise
            log.exception("the %s of event %s was dropped: the database rejects it", op.what, op.event_id, extra=where)
            return False
        except Exception:
            # Not the database's doing: a bug. The camera goes on; the report needs this traceback.
            log.exception("the %s of event %s was dropped: writing it failed", op.what, op.event_id, extra=where)
            return False
        return True

    async def _retry(self) -> None:
        delay = EVENT_RETRY_S
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(EVENT_RETRY_S if self._stopping else delay):
                        await self._wake.wait()
                self._wake.clear()
                if await self._flush():
                    log.info("the events table takes writes again; the delayed ones are stored")
                    return
                delay = min(delay * 2, EVENT_RETRY_MAX_S)
        finally:
            if self._retrier is asyncio.current_task():
                self._retrier = None

    def _give_up(self, event_id: str, why: str) -> None:
        lost = [w for w in self._pending if w.event_id == event_id and w is not self._in_flight]
        for w in lost:
            self._pending.remove(w)
            _made(w, False)
        if not any(w.what in ("end", "close") for w in lost):
            self._given_up.add(event_id)
        parts = sorted({w.what for w in lost}, key=["start", "peak", "end", "close"].index)
        if "start" in parts:
            outcome = "the event has no row unless its end is still stored (with no snapshot); its footage is recorded"
        else:
            outcome = (
                "its row keeps what was stored before; a row left open is closed, and its clip made, at the next start"
            )
        log.error(
            "event %s was not stored: %s. Lost: its %s; %s. Make the database reachable again: check the "
            "PostgreSQL server and the network to it, or which program holds the SQLite database locked, "
            "and the free disk space",
            event_id,
            why,
            ", ".join(parts),
            outcome,
            extra={"camera": self.camera_id, "event_id": event_id},
        )


def _made(op: _Write, made: bool) -> None:
    if not op.done.done():
        op.done.set_result(made)


def _ended_of(row: Event) -> EventEnded:
    """The end of an event as the tracker would have reported it, from its closed row."""
    assert row.end_utc is not None
    try:
        reason = EndReason(row.end_reason or "")
    except ValueError:
        reason = EndReason.SHUTDOWN
    return EventEnded(
        event_id=row.id,
        camera_id=row.camera_id,
        start=row.start_utc,
        end=row.end_utc,
        clip_from=row.clip_from,
        clip_to=row.clip_to or row.end_utc,
        reason=reason,
        armed=row.armed,
        peak_t=row.peak_at or row.start_utc,
        peak_score=row.peak_score or 0.0,
        peak_boxes=tuple((b[0], b[1], b[2], b[3]) for b in boxes_from_json(row.peak_boxes)),
    )


def _run_then_settle(
    body: Callable[[], None], loop: asyncio.AbstractEventLoop, ended: asyncio.Future[str | None]
) -> None:
    """Run a thread's body; `ended` then holds what made it fail (None: it returned)."""
    failure: str | None = None
    try:
        body()
    except Exception as exc:
        log.exception("%s failed", threading.current_thread().name)
        failure = mask_text(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, ended, failure)


def _settle(ended: asyncio.Future[str | None], failure: str | None) -> None:
    if not ended.done():
        ended.set_result(failure)


_ANALYSER_ENDED: Final = Analysis(datetime.min.replace(tzinfo=UTC), None)


def _to_loop(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Analysis], analysis: Analysis) -> None:
    loop.call_soon_threadsafe(queue.put_nowait, analysis)
