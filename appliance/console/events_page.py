"""The console's page of one event: what the link in an alert opens.

Staff signed in to the console (any role) see the camera, when the event began and ended in the
store's time, what it was, how much of the picture moved, the snapshot, the clip playing in the
browser and the clip's SHA-256 (the hash the evidence chain signed). The footage is personal data,
so every view of the page and every fetch of its snapshot or clip is written to the log as one
structured line on the `appliance.audit` logger (who, which event, when); the audit log table of
the console comes later and will take these over.

The clip route serves the file from the footage store with aiohttp's FileResponse, which answers
Range requests (206): browsers seek in a video that way, and a phone fetches only what it plays.
An H.265 camera's event plays from its H.264 rendition, since browsers cannot decode H.265; the
original stays the evidence and is what the "download" link and the SHA-256 are about.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Final, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.cameras.clips import CLIP_WAIT_TIMEOUT_S
from appliance.config import Config
from appliance.console.features import ConsoleFeature
from appliance.console.keys import SESSION
from appliance.console.render import page
from appliance.storage.events import EventStore
from appliance.storage.footage import InvalidKey, check_key
from appliance.storage.models import EVENT_KINDS, Event
from appliance.web.i18n import Text
from appliance.web.timefmt import to_local

audit = logging.getLogger("appliance.audit")

EVENTS = web.AppKey("event_page_store", EventStore)
FOOTAGE_ROOT = web.AppKey("event_page_footage_root", Path)
CAMERA_NAMES: web.AppKey[dict[str, str]] = web.AppKey("event_page_camera_names")
TIMEZONE = web.AppKey("event_page_timezone", ZoneInfo)

EVENT_ID: Final = r"{event_id:[A-Za-z0-9._-]{1,96}}"
"""What `event_id_for` makes (and the suffixes of health events); anything else is the console's 404 page."""
SECONDS_FORMAT: Final = "%d.%m.%Y %H:%M:%S"
"""Seconds matter when staff compare an event with a till receipt."""

CLIP_GRACE: Final = timedelta(seconds=CLIP_WAIT_TIMEOUT_S + 30)
"""How long after the end of its footage an event's clip may still come: the clip service waits up to
CLIP_WAIT_TIMEOUT_S for the footage, then cuts it in seconds."""

Fetch = Literal["page", "snapshot", "clip", "original"]

MESSAGES: Final = {
    "event.title": Text("Событие: {camera}", "Event: {camera}"),
    "event.camera": Text("Камера", "Camera"),
    "event.start": Text("Начало", "Started"),
    "event.end": Text("Конец", "Ended"),
    "event.still_open": Text("ещё идёт", "still going on"),
    "event.kind": Text("Что произошло", "What happened"),
    "event.peak": Text("Сильнее всего", "Strongest"),
    "event.peak_value": Text(
        "{time}: движение на {percent} % площади кадра", "{time}: motion over {percent} % of the picture"
    ),
    "event.kind.motion": Text("движение", "motion"),
    "event.kind.offline": Text("камера была не в сети", "the camera was offline"),
    "event.kind.tamper_covered": Text("объектив закрыли", "the lens was covered"),
    "event.kind.tamper_defocus": Text("изображение не в фокусе", "the picture went out of focus"),
    "event.kind.tamper_scene_change": Text("камеру повернули или сдвинули", "the camera was turned or moved"),
    "event.snapshot": Text("Снимок", "Snapshot"),
    "event.snapshot_alt": Text("Снимок камеры «{camera}» в {time}", "Snapshot of “{camera}” at {time}"),
    "event.no_snapshot": Text("Снимка нет.", "No snapshot."),
    "event.clip": Text("Видео", "Video"),
    "event.clip_facts": Text("{seconds} с, {size} МБ", "{seconds} s, {size} MB"),
    "event.rendition": Text(
        "Камера снимает в H.265, который браузеры не показывают: здесь играет копия в H.264. Доказательство — "
        "исходный файл: его можно скачать, и SHA-256 ниже относится к нему.",
        "The camera records H.265, which browsers do not play: this is an H.264 copy. The original file is the "
        "evidence: download it below; the SHA-256 is the original's.",
    ),
    "event.download": Text("Скачать исходный файл (MP4)", "Download the original file (MP4)"),
    "event.sha256": Text("SHA-256 исходного файла", "SHA-256 of the original file"),
    "event.sha256_hint": Text(
        "Хеш записан в подписанную цепочку записей устройства. Проверить записи: appliance footage verify.",
        "The hash is in the appliance's signed evidence chain. To check the footage: appliance footage verify.",
    ),
    "event.no_video": Text(
        "Браузер не показывает видео. Скачайте файл и откройте его в проигрывателе.",
        "The browser cannot show the video. Download the file and open it in a video player.",
    ),
    "event.clip_pending": Text(
        "Событие ещё идёт или видео собирается: оно появится через несколько секунд после конца события. "
        "Обновите страницу.",
        "The event is still going on or its video is being made: it appears a few seconds after the event ends. "
        "Reload the page.",
    ),
    "event.clip_gone": Text(
        "Видео этого события больше нет: его удалили по сроку хранения, или его не удалось записать. "
        "Снимок и время события сохранены.",
        "This event's video is no longer here: it was deleted when its keep time ran out, or it could not be "
        "recorded. The snapshot and the times are kept.",
    ),
    "event.not_found.title": Text("Событие не найдено", "Event not found"),
    "event.not_found.body": Text(
        "События «{event_id}» нет. Возможно, ссылка неполная (откройте её из оповещения ещё раз) или событие "
        "удалили вместе со старыми записями.",
        "There is no event “{event_id}”. The link may be incomplete (open it from the alert again), or the event "
        "was deleted with old footage.",
    ),
    "event.to_cameras": Text("К камерам", "To the cameras"),
}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class ClipFiles:
    """What of an event's clip is on disk: the file that plays in a browser and the original."""

    playable: Path | None
    original: Path | None


def _footage_path(root: Path, key: str | None) -> Path | None:
    if key is None:
        return None
    try:
        check_key(key)
    except InvalidKey:
        return None
    return root / PurePosixPath(key)


def clip_files(root: Path, event: Event) -> ClipFiles:
    """Blocking (looks at the disk): the event's clip files that exist."""
    original = _footage_path(root, event.clip_key)
    rendition = _footage_path(root, event.rendition_key)
    original = original if original is not None and original.is_file() else None
    rendition = rendition if rendition is not None and rendition.is_file() else None
    return ClipFiles(rendition or original, original)


def clip_pending(event: Event, now: datetime) -> bool:
    """The clip may still come: the event goes on, or its post-roll ended moments ago."""
    if event.end_utc is None:
        return True
    return event.clip_key is None and event.clip_to is not None and now < event.clip_to + CLIP_GRACE


def _audit(request: web.Request, what: Fetch, event_id: str, found: bool) -> None:
    session = request[SESSION]
    audit.info(
        "footage viewed" if found else "footage asked for but not found",
        extra={
            "audit": f"event_{what}",
            "user": session.username if session is not None else None,
            "event_id": event_id,
            "at": datetime.now(UTC).isoformat(),
            "range": request.headers.get("Range"),
            "client": request.remote,
        },
    )


async def _event(request: web.Request, what: Fetch) -> tuple[str, Event | None]:
    event_id = request.match_info["event_id"]
    event = await request.app[EVENTS].get(event_id)
    _audit(request, what, event_id, event is not None)
    return event_id, event


def _local(request: web.Request, moment: datetime | None) -> str | None:
    return None if moment is None else to_local(moment, request.app[TIMEZONE]).strftime(SECONDS_FORMAT)


@routes.get(f"/events/{EVENT_ID}", name="event")
async def event_page(request: web.Request) -> web.Response:
    event_id, event = await _event(request, "page")
    if event is None:
        return page(request, "event.html", {"event": None, "event_id": event_id}, status=404)
    files = await asyncio.to_thread(clip_files, request.app[FOOTAGE_ROOT], event)
    camera = request.app[CAMERA_NAMES].get(event.camera_id, event.camera_id)
    return page(
        request,
        "event.html",
        {
            "event": event,
            "event_id": event_id,
            "camera": camera,
            "kind": event.kind if event.kind in EVENT_KINDS else None,
            "start": _local(request, event.start_utc),
            "end": _local(request, event.end_utc),
            "peak_at": _local(request, event.peak_at),
            "peak_percent": None if event.peak_score is None else event.peak_score * 100,
            "files": files,
            "is_rendition": files.playable is not None and files.playable != files.original,
            "clip_pending": clip_pending(event, datetime.now(UTC)),
            "clip_mb": None if event.clip_size is None else event.clip_size / 1024**2,
        },
    )


@routes.get(f"/events/{EVENT_ID}/snapshot.jpg", name="event_snapshot")
async def event_snapshot(request: web.Request) -> web.Response:
    _, event = await _event(request, "snapshot")
    if event is None or event.snapshot_jpeg is None:
        raise web.HTTPNotFound()
    return web.Response(body=event.snapshot_jpeg, content_type="image/jpeg")


async def _clip(request: web.Request, what: Literal["clip", "original"]) -> web.FileResponse:
    event_id, event = await _event(request, what)
    if event is None:
        raise web.HTTPNotFound()
    files = await asyncio.to_thread(clip_files, request.app[FOOTAGE_ROOT], event)
    path = files.playable if what == "clip" else files.original
    if path is None:
        raise web.HTTPNotFound()
    disposition = "inline" if what == "clip" else f'attachment; filename="{event_id}.mp4"'
    # FileResponse answers Range requests (206) and sends the file without reading it into memory.
    return web.FileResponse(
        path,
        headers={"Content-Type": "video/mp4", "Content-Disposition": disposition, "Cache-Control": "private, no-store"},
    )


@routes.get(f"/events/{EVENT_ID}/clip.mp4", name="event_clip")
async def event_clip(request: web.Request) -> web.FileResponse:
    """The video the page plays: the H.264 rendition of an H.265 clip, else the clip itself."""
    return await _clip(request, "clip")


@routes.get(f"/events/{EVENT_ID}/original.mp4", name="event_original")
async def event_original(request: web.Request) -> web.FileResponse:
    """The clip as recorded and hashed into the evidence chain, as a download."""
    return await _clip(request, "original")


def events_feature(cfg: Config, sessions: async_sessionmaker[AsyncSession]) -> ConsoleFeature:
    """The event page and its snapshot and clip routes; no menu entry (alerts link to it)."""
    names = {cam.id: cam.name for cam in cfg.cameras}

    def setup(app: web.Application) -> None:
        app[EVENTS] = EventStore(sessions)
        app[FOOTAGE_ROOT] = cfg.footage_dir
        app[CAMERA_NAMES] = names
        app[TIMEZONE] = ZoneInfo(cfg.appliance.timezone)

    return ConsoleFeature("events", routes, MESSAGES, setup=setup)
