"""Assembling the camera side of the appliance from the config: storage, evidence, pipelines.

Order at start: reconcile the footage with the index (a kill -9 leaves a partial segment), close
events a crash left open, then start recording. Evidence is signed every minute by its own
component and once more after every recorder has finished at shutdown (`finish`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.bus import EventBus
from appliance.cameras.clips import ClipService
from appliance.cameras.pipeline import CameraPipeline, Component, PipelineDeps, record_segment
from appliance.cameras.reconcile import reconcile
from appliance.cameras.recorder import MIN_FREE_BYTES
from appliance.cameras.renditions import Transcoder
from appliance.cameras.retention_runner import RetentionRunner
from appliance.cameras.status import StatusBoard
from appliance.config import Config
from appliance.evidence.keys import load_or_create_key
from appliance.evidence.ledger import EvidenceLedger
from appliance.storage.events import EventStore
from appliance.storage.footage import LocalFootageStore
from appliance.storage.segments import SegmentIndex, SegmentInfo
from appliance.supervisor import StopStage

log = logging.getLogger(__name__)

GB = 1024**3


@dataclass
class CameraSystem:
    components: list[tuple[str, Component, StopStage]]
    ledger: EvidenceLedger
    events: EventStore
    transcoder: Transcoder

    async def finish(self) -> None:
        """After the recorders stopped: sign what they finalised on their way out."""
        self.transcoder.shutdown()
        await self.ledger.sign_heads(datetime.now(UTC))


async def build_cameras(
    cfg: Config, sessions: async_sessionmaker[AsyncSession], board: StatusBoard, bus: EventBus
) -> CameraSystem:
    """Raises `KeyFileError` (evidence key unusable) with a message that says what to do."""
    store = LocalFootageStore(cfg.footage_dir)
    index = SegmentIndex(sessions)
    events = EventStore(sessions)
    ledger = EvidenceLedger(sessions, load_or_create_key(cfg.appliance.data_dir))
    enabled = [cam for cam in cfg.cameras if cam.enabled]

    async def chain(info: SegmentInfo) -> None:
        await record_segment(ledger, info)

    report = await reconcile(
        store, index, [cam.id for cam in cfg.cameras], on_segment=chain, chained=ledger.recorded_keys
    )
    log.info("footage reconciled", extra={"report": str(report)})
    now = datetime.now(UTC)
    for cam in cfg.cameras:
        closed = await events.close_open(cam.id, now, "shutdown")
        if closed:
            log.info("closed events left open by a stop", extra={"camera": cam.id, "events": closed})

    clips = ClipService(store, index, events, ledger, bus)
    transcoder = Transcoder()
    deps = PipelineDeps(
        store=store,
        index=index,
        events=events,
        ledger=ledger,
        clips=clips,
        bus=bus,
        board=board,
        timezone=ZoneInfo(cfg.appliance.timezone),
        segment_seconds=cfg.recording.segment_seconds,
        # Recording stops only at the recorder's own last-resort floor; retention keeps
        # min_free_gb free well before that.
        min_free_bytes=MIN_FREE_BYTES,
        transcoder=transcoder,
    )
    components: list[tuple[str, Component, StopStage]] = []
    for cam in enabled:
        components += CameraPipeline(cam, deps).components()
    retention = RetentionRunner(
        store,
        index,
        ledger,
        bus,
        {cam.id: cam.retention_policy() for cam in cfg.cameras},
        quota_bytes=int(cfg.recording.quota_gb * GB) if cfg.recording.quota_gb else None,
        min_free_bytes=int(cfg.recording.min_free_gb * GB),
        interval_s=cfg.recording.retention_interval_s,
        events=events,
    )
    components += [
        ("evidence-signer", ledger.run_signer, StopStage.EVIDENCE),
        # Stopped first: deleting footage is no work for the last seconds of a shutdown.
        ("retention", retention.run, StopStage.SOURCES),
    ]
    return CameraSystem(components, ledger, events, transcoder)
