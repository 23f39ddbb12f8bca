"""Camera ingest: reconnect policy, credentials, error classification, and a real RTSP peer."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable

import av.error
import pytest

from appliance.cameras.fanout import READ_TIMEOUT_S, StreamFanout
from appliance.cameras.ingest import ReconnectPolicy, StreamEnded, classify_error, run_stream, stream_url
from appliance.cameras.status import CameraState, StatusBoard
from appliance.config import CameraConfig
from tests.gst_peer import gst_camera


def camera(url: str, username: str | None = None, password: str | None = None) -> CameraConfig:
    return CameraConfig.model_validate(
        {"id": "cam1", "name": "Касса", "main_url": url, "username": username, "password": password}
    )


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    policy = ReconnectPolicy()
    rng = random.Random(1)
    bases = [1, 2, 4, 8, 16, 30, 30]
    for attempt, base in enumerate(bases):
        delay = policy.delay(attempt, rng)
        assert base * 0.8 <= delay <= base * 1.2


def test_credentials_are_put_into_the_url_quoted() -> None:
    cam = camera("rtsp://10.0.0.2:554/Streaming/Channels/101", "admin", "p@ss:w/rd")
    assert stream_url(cam, cam.main_url) == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.2:554/Streaming/Channels/101"
    already = camera("rtsp://viewer:x@10.0.0.2/1", "admin", "other")
    assert stream_url(already, already.main_url) == "rtsp://viewer:x@10.0.0.2/1"


@pytest.mark.parametrize(
    ("exc", "state", "words"),
    [
        (av.error.HTTPUnauthorizedError(1, "401"), CameraState.AUTH_FAILED, "401"),
        (av.error.HTTPNotFoundError(1, "404"), CameraState.NOT_FOUND, "404"),
        (av.error.ConnectionRefusedError(111, "refused"), CameraState.RECONNECTING, "connection refused"),
        (StreamEnded(), CameraState.RECONNECTING, "closed the stream"),
    ],
)
def test_errors_are_explained(exc: BaseException, state: CameraState, words: str) -> None:
    got_state, message = classify_error(exc)
    assert got_state is state and words in message


async def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


async def _run(cam: CameraConfig, board: StatusBoard, policy: ReconnectPolicy | None = None) -> asyncio.Task[None]:
    board.register(cam.id, cam.name)
    return asyncio.create_task(run_stream(cam, cam.main_url, StreamFanout(cam.id), board, policy))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.slow
async def test_online_with_fps_and_resolution_from_a_real_camera() -> None:
    with gst_camera("admin", "Right-Pass1") as peer:
        board = StatusBoard()
        task = await _run(camera(peer.url(with_credentials=False), "admin", "Right-Pass1"), board)
        try:
            await wait_for(lambda: board.get("cam1").state is CameraState.ONLINE, 20)
            status = board.get("cam1")
            assert (status.width, status.height, status.codec) == (1280, 720, "h264")
            assert 10 <= status.fps <= 20 and status.bitrate_kbps > 0
        finally:
            await _stop(task)


@pytest.mark.slow
async def test_wrong_password_is_reported_as_401_without_leaking_it() -> None:
    with gst_camera("admin", "Right-Pass1") as peer:
        board = StatusBoard()
        task = await _run(camera(peer.url(with_credentials=False), "admin", "Wrong-Pass1"), board)
        try:
            await wait_for(lambda: board.get("cam1").state is CameraState.AUTH_FAILED, 20)
            error = board.get("cam1").last_error or ""
            assert "401" in error and "password" in error and "Wrong-Pass1" not in error
        finally:
            await _stop(task)


@pytest.mark.slow
async def test_unknown_path_is_reported_as_404() -> None:
    with gst_camera() as peer:
        board = StatusBoard()
        task = await _run(camera(peer.url("no-such-stream")), board)
        try:
            await wait_for(lambda: board.get("cam1").state is CameraState.NOT_FOUND, 20)
        finally:
            await _stop(task)


@pytest.mark.slow
async def test_reconnects_after_the_camera_restarts() -> None:
    with gst_camera() as peer:
        board = StatusBoard()
        task = await _run(camera(peer.url()), board, ReconnectPolicy(initial_s=0.2, max_s=1.0))
        try:
            await wait_for(lambda: board.get("cam1").state is CameraState.ONLINE, 20)
            peer.stop()
            await wait_for(lambda: board.get("cam1").state is CameraState.RECONNECTING, 15)
            assert board.get("cam1").fps == 0.0
            peer.start()
            await wait_for(lambda: board.get("cam1").state is CameraState.ONLINE, 20)
        finally:
            await _stop(task)


@pytest.mark.slow
async def test_a_camera_that_stops_answering_fails_the_read_within_the_timeout() -> None:
    """A frozen camera keeps its TCP connection open but sends nothing: the read must time out
    (FFmpeg's socket timeout) rather than hang the stream forever."""
    with gst_camera() as peer:
        board = StatusBoard()
        task = await _run(camera(peer.url()), board, ReconnectPolicy(initial_s=0.2, max_s=1.0))
        try:
            await wait_for(lambda: board.get("cam1").state is CameraState.ONLINE, 20)
            assert peer.proc is not None
            os.killpg(peer.proc.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                # FFmpeg's RTSP client waits out the socket timeout twice (it retries once).
                await wait_for(lambda: board.get("cam1").state is CameraState.RECONNECTING, 2 * READ_TIMEOUT_S + 10)
                waited = time.monotonic() - frozen
            finally:
                os.killpg(peer.proc.pid, signal.SIGCONT)
            assert waited >= READ_TIMEOUT_S - 1
            error = board.get("cam1").last_error or ""
            assert "no answer from the camera" in error, error
        finally:
            await _stop(task)
