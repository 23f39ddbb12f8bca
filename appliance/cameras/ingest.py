"""Pulling a camera's RTSP stream: connect, read packets, reconnect with backoff, report status.

The demuxer (PyAV/FFmpeg) blocks, so each stream gets its own thread; the event loop only sees
status updates, handed over with `call_soon_threadsafe`. A dedicated thread rather than the
default executor because the executor has ~6 workers on this 2-core box and a stream holds one
for hours.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import av
import av.error

from appliance.cameras.status import CameraState, StatusBoard
from appliance.config import CameraConfig
from appliance.redact import mask_text, mask_url

log = logging.getLogger(__name__)

# FFmpeg's RTSP client: TCP interleaving (UDP loses packets on busy Wi-Fi and through NAT);
# `timeout` is the socket read timeout in microseconds, so a silent camera is noticed.
READ_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 10.0
STATS_WINDOW_S = 2.0
# A rejected password will not start working by itself; retrying it every second would also
# lock the account on many Hikvision-class cameras.
AUTH_RETRY_S = 300.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff with jitter: 1 s doubling to 30 s, ±20 %."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


def stream_url(cam: CameraConfig, url: str) -> str:
    """The URL with the configured credentials in it (FFmpeg takes them only from the URL)."""
    parts = urlsplit(url)
    if cam.username is None or parts.username is not None:
        return url
    password = cam.password.get_secret_value() if cam.password else ""
    userinfo = quote(cam.username, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def classify_error(exc: BaseException) -> tuple[CameraState, str]:
    """A camera failure in the words the console shows, with what to do about it."""
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return CameraState.AUTH_FAILED, "401: the camera refused the login; check the user name and password"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return CameraState.NOT_FOUND, "404: the camera has no stream at this path; check the URL"
    if isinstance(exc, av.error.ConnectionRefusedError):
        return (
            CameraState.RECONNECTING,
            "connection refused: the camera is up but not serving RTSP on this port",
        )
    if isinstance(exc, av.error.TimeoutError | TimeoutError):
        return CameraState.RECONNECTING, "no answer from the camera: check its power and network cable"
    if isinstance(exc, StreamEnded):
        return CameraState.RECONNECTING, "the camera closed the stream (reboot or settings change)"
    return CameraState.RECONNECTING, f"stream error: {type(exc).__name__}: {exc}"


class StreamEnded(Exception):
    """The camera ended the stream cleanly; for a live camera this means it went away."""


@dataclass
class StreamStats:
    fps: float
    bitrate_kbps: float
    width: int | None
    height: int | None
    codec: str | None


def _read_stream(url: str, stop: threading.Event, report: Callable[[StreamStats], None]) -> None:
    """Blocking: open the stream and read it until `stop` is set or it fails (raises)."""
    options = {"rtsp_transport": "tcp", "timeout": str(int(READ_TIMEOUT_S * 1_000_000))}
    with av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S)) as container:
        video = container.streams.video[0]
        ctx = video.codec_context
        # Rates come from the stream's own timestamps, not arrival times: at connect a camera
        # bursts its buffered GOP, which would read as double the frame rate.
        time_base = float(video.time_base) if video.time_base else 1 / 90_000
        frames = 0
        size = 0
        first_pts: int | None = None
        window_start = time.monotonic()
        for packet in container.demux(video):
            if stop.is_set():
                return
            if packet.size == 0 or packet.pts is None:
                continue
            if first_pts is None:
                first_pts = packet.pts
            else:
                frames += 1
                size += packet.size
            now = time.monotonic()
            span = (packet.pts - first_pts) * time_base
            if now - window_start >= STATS_WINDOW_S and span > 0:
                report(StreamStats(frames / span, size * 8 / span / 1000, ctx.width, ctx.height, ctx.name))
                frames, size, first_pts, window_start = 0, 0, packet.pts, now
    raise StreamEnded


def _settle(done: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not done.done():  # cancelled meanwhile
        done.set_result(error)


async def run_camera(cam: CameraConfig, board: StatusBoard, policy: ReconnectPolicy | None = None) -> None:
    """One camera's ingest, forever: connect, read, and on failure wait and reconnect."""
    policy = policy or ReconnectPolicy()
    loop = asyncio.get_running_loop()
    url = stream_url(cam, cam.main_url)
    attempt = 0

    def on_stats(stats: StreamStats) -> None:
        loop.call_soon_threadsafe(_online, stats)

    def _online(stats: StreamStats) -> None:
        nonlocal attempt
        attempt = 0
        if board.get(cam.id).state is not CameraState.ONLINE:
            log.info("camera online", extra={"camera": cam.id, "url": mask_url(cam.main_url)})
        board.update(
            cam.id,
            state=CameraState.ONLINE,
            last_error=None,
            fps=round(stats.fps, 1),
            bitrate_kbps=round(stats.bitrate_kbps),
            width=stats.width,
            height=stats.height,
            codec=stats.codec,
        )

    while True:
        stop = threading.Event()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def worker(stop: threading.Event = stop, done: asyncio.Future[BaseException | None] = done) -> None:
            error: BaseException | None = None
            try:
                _read_stream(url, stop, on_stats)
            except BaseException as exc:
                error = exc
            loop.call_soon_threadsafe(_settle, done, error)

        thread = threading.Thread(target=worker, name=f"ingest-{cam.id}", daemon=True)
        thread.start()
        try:
            error = await done
        finally:
            # On cancellation the thread notices `stop` at its next packet or read timeout.
            stop.set()
        state, message = classify_error(error or StreamEnded())
        message = mask_text(message, (cam.password.get_secret_value(),) if cam.password else ())
        delay = AUTH_RETRY_S if state in (CameraState.AUTH_FAILED, CameraState.NOT_FOUND) else policy.delay(attempt)
        attempt += 1
        board.update(cam.id, state=state, last_error=message, fps=0.0, bitrate_kbps=0.0)
        log.warning(
            "camera stream failed; retrying",
            extra={
                "camera": cam.id,
                "url": mask_url(cam.main_url),
                "error": message,
                "retry_in_s": round(delay, 1),
            },
        )
        await asyncio.sleep(delay)
