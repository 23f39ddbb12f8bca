"""Pulling a camera's RTSP stream: connect, read packets, reconnect with backoff, report status.

The demuxer (PyAV/FFmpeg, `fanout.pump`) blocks, so each stream gets its own thread; the event
loop only sees the outcome, handed over with `call_soon_threadsafe`. A dedicated thread rather
than the default executor because the executor has ~6 workers on this 2-core box and a stream
holds one for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import av
import av.error

from appliance.cameras.fanout import StreamFanout, pump
from appliance.cameras.status import CameraState, StatusBoard
from appliance.config import CameraConfig
from appliance.redact import mask_text, mask_url
from appliance.threads import start_thread

log = logging.getLogger(__name__)

STATS_PERIOD_S = 2.0
"""How often fps and bitrate are recomputed from the fanout's counters."""
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


class StreamStats:
    """fps and bitrate of a stream from its fanout's counters, over the last period."""

    def __init__(self, fanout: StreamFanout) -> None:
        self.fanout = fanout
        self._last: tuple[int, int, float | None] = (0, 0, None)

    def sample(self) -> tuple[float, float] | None:
        """(fps, kbit/s) in media time since the previous sample, or None before two samples."""
        packets, size, media = self.fanout.published, self.fanout.bytes_published, self.fanout.last_media_s
        prev_packets, prev_size, prev_media = self._last
        self._last = (packets, size, media)
        if media is None or prev_media is None or media <= prev_media or packets <= prev_packets:
            return None
        span = media - prev_media
        return (packets - prev_packets) / span, (size - prev_size) * 8 / span / 1000


def _settle(done: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not done.done():  # cancelled meanwhile
        done.set_result(error)


async def run_stream(
    cam: CameraConfig,
    url: str,
    fanout: StreamFanout,
    board: StatusBoard | None,
    policy: ReconnectPolicy | None = None,
) -> None:
    """Keep one stream of a camera connected, forever, publishing its packets to `fanout`.

    `board`: this stream's health is the camera's (the main stream); None for the sub stream,
    whose failures are only logged.
    """
    policy = policy or ReconnectPolicy()
    loop = asyncio.get_running_loop()
    full_url = stream_url(cam, url)
    secrets = (cam.password.get_secret_value(),) if cam.password else ()
    stats = StreamStats(fanout)
    attempt = 0
    while True:
        stop = threading.Event()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def worker(stop: threading.Event = stop, done: asyncio.Future[BaseException | None] = done) -> None:
            error: BaseException | None = None
            try:
                pump(full_url, fanout, stop)
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, done, error)

        start_thread(worker, f"pump-{cam.id}-{fanout.stream}")
        try:
            while not done.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), STATS_PERIOD_S)
                rates = stats.sample()
                if rates is not None:
                    attempt = 0
                    if board is not None:
                        _online(cam, fanout, board, *rates)
            error = done.result()
        finally:
            # On cancellation the thread notices `stop` at its next packet or read timeout.
            stop.set()
        state, message = classify_error(error or StreamEnded())
        message = mask_text(message, secrets)
        refused = state in (CameraState.AUTH_FAILED, CameraState.NOT_FOUND)
        delay = AUTH_RETRY_S if refused else policy.delay(attempt)
        attempt += 1
        if board is not None:
            board.update(cam.id, state=state, last_error=message, fps=0.0, bitrate_kbps=0.0)
        log.warning(
            "camera stream failed; retrying",
            extra={
                "camera": cam.id,
                "stream": fanout.stream,
                "url": mask_url(url),
                "error": message,
                "retry_in_s": round(delay, 1),
            },
        )
        await asyncio.sleep(delay)


def _online(cam: CameraConfig, fanout: StreamFanout, board: StatusBoard, fps: float, kbps: float) -> None:
    if board.get(cam.id).state is not CameraState.ONLINE:
        log.info("camera online", extra={"camera": cam.id, "url": mask_url(cam.main_url)})
    params = fanout.params
    board.update(
        cam.id,
        state=CameraState.ONLINE,
        last_error=None,
        fps=round(fps, 1),
        bitrate_kbps=round(kbps),
        width=params.width if params else None,
        height=params.height if params else None,
        codec=params.codec if params else None,
    )
