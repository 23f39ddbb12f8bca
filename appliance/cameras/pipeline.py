"""One camera, end to end: streams in, segments and events out.

    main stream ──pump──► fanout ──► recorder ──► segments (index, evidence chain, motion heatmap)
                                 └─► analyser, renditions (when there is no sub stream)
    sub stream  ──pump──► fanout ──► analyser ──► events (store, bus, clip) and tamper events
                                 └─► renditions (H.264 copies of an H.265 camera's events, made live)

Each stream is opened once (cheap cameras allow two to four RTSP sessions) and every piece is a
separate supervised component, so a crashed analyser restarts without a gap in the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy.exc import OperationalError

from appliance.bus import EventBus
from appliance.cameras.analyser import Analyser, Analysis
from appliance.cameras.clips import ClipInfo, ClipService
from appliance.cameras.events import EventEnded, EventStarted, EventTracker, PeakChanged, event_id_for
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
from appliance.cameras.recorder import Recorder
from appliance.cameras.renditions import LiveRenditions, Transcoder
from appliance.cameras.status import CameraState, StatusBoard
from appliance.cameras.tamper import TamperDetector, TamperEvent
from appliance.cameras.uncancelled import uncancelled
from appliance.config import CameraConfig
from appliance.evidence.ledger import EvidenceLedger
from appliance.storage.events import EventStore
from appliance.storage.footage import FootageStore, clip_key
from appliance.storage.segments import SegmentIndex, SegmentInfo
from appliance.supervisor import StopStage

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


class CameraPipeline:
    def __init__(self, cam: CameraConfig, deps: PipelineDeps, policy: ReconnectPolicy | None = None) -> None:
        self.cam = cam
        self.deps = deps
        self.policy = policy or ReconnectPolicy()
        self.main = StreamFanout(cam.id, "main")
        self.sub = StreamFanout(cam.id, "sub") if cam.sub_url else None
        self._recent: deque[tuple[datetime, MotionResult]] = deque()
        self._clip_tasks: set[asyncio.Task[object]] = set()
        self._tamper_events: dict[str, str] = {}
        self._offline_event: str | None = None
        self._renditions: LiveRenditions | None = None

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
        )
        try:
            await recorder.run()
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
        ended: asyncio.Future[None] = loop.create_future()
        body = partial(_run_then_settle, renditions.run, loop, ended)
        threading.Thread(target=body, name=f"renditions-{self.cam.id}", daemon=True).start()
        self._renditions = renditions
        try:
            await asyncio.shield(ended)
            raise RuntimeError(f"the renditions thread of camera {self.cam.id!r} ended; see the log")
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
        sub = fanout.subscribe("analyser")
        queue: asyncio.Queue[Analysis] = asyncio.Queue()
        cam = self.cam
        analyser = Analyser(
            cam.id,
            sub,
            MotionDetector(cam.motion, zones=cam.zones, masks=cam.masks),
            TamperDetector(),
            EventTracker(cam.id, cam.events.settings(), schedule=cam.events.schedule(), tz=self.deps.timezone),
            partial(_to_loop, loop, queue),
        )
        ended: asyncio.Future[None] = loop.create_future()
        body = partial(_run_then_settle, analyser.run, loop, ended)
        threading.Thread(target=body, name=f"analyser-{cam.id}", daemon=True).start()
        try:
            while True:
                await uncancelled(self._handle(await queue.get()))
        finally:
            analyser.stop()
            fanout.unsubscribe(sub)
            # Awaited on the loop, not joined in the default executor: at shutdown every camera
            # waits at once, and the executor's few workers are needed for the recorders' files.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), ANALYSER_STOP_S)
            while not queue.empty():  # the events the tracker closed at shutdown
                await self._handle(queue.get_nowait())

    async def _handle(self, a: Analysis) -> None:
        if a.result is not None and a.result.motion:
            self._recent.append((a.t, a.result))
        horizon = a.t - timedelta(seconds=MOTION_MEMORY_S)
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        for action in a.actions:
            if isinstance(action, EventStarted):
                self._open_rendition(action)
                await self.deps.events.started(action, snapshot=a.snapshot, thumbnail=a.thumbnail)
                self.deps.bus.publish(
                    EventOpened(
                        self.cam.id, action.event_id, "motion", action.start, action.armed, a.snapshot, a.thumbnail
                    )
                )
            elif isinstance(action, PeakChanged):
                await self.deps.events.peak(action, snapshot=a.snapshot, thumbnail=a.thumbnail)
            elif isinstance(action, EventEnded):
                await self.deps.events.ended(action)
                self.deps.bus.publish(
                    EventClosed(self.cam.id, action.event_id, "motion", action.start, action.end, str(action.reason))
                )
                clip = self.deps.clips.on_event_ended(action, self._close_rendition(action))
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
            await self.deps.events.close(event_id, t, "cleared")
            self.deps.bus.publish(TamperCleared(self.cam.id, event_id, kind, t))

    async def _open_health(self, kind: str, t: datetime, snapshot: bytes | None = None) -> str:
        """A health event (offline, tamper) as an events row: no clip, always alerting."""
        event_id = f"{event_id_for(self.cam.id, t)}-{kind}"
        start = EventStarted(event_id, self.cam.id, t, t, armed=True)
        await self.deps.events.started(start, kind=kind, snapshot=snapshot)
        return event_id

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
                await self.deps.events.close(self._offline_event, now, "back_online")
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
    the write for a moment (another writer held it past the busy timeout) is asked again; what is
    still left out is appended by reconciliation at the next start."""
    for attempt in range(1, CHAIN_ATTEMPTS + 1):
        try:
            await ledger.append(info.camera_id, "segment", info.key, info.sha256, info.size_bytes, info.start_utc)
            return
        except OperationalError as exc:
            if attempt == CHAIN_ATTEMPTS:
                raise
            log.warning(
                "evidence chain append failed; retrying",
                extra={"camera": info.camera_id, "key": info.key, "error": str(exc.orig), "attempt": attempt},
            )
            await asyncio.sleep(CHAIN_RETRY_S * attempt)


def _run_then_settle(body: Callable[[], None], loop: asyncio.AbstractEventLoop, ended: asyncio.Future[None]) -> None:
    try:
        body()
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, ended)


def _settle(ended: asyncio.Future[None]) -> None:
    if not ended.done():
        ended.set_result(None)


def _to_loop(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Analysis], analysis: Analysis) -> None:
    loop.call_soon_threadsafe(queue.put_nowait, analysis)
