"""The simulator's RTSP server against real clients: FFmpeg (PyAV, ffprobe) and raw sockets."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import numpy as np
import pytest

from appliance.simulator import h264, stream
from appliance.simulator import server as server_module
from appliance.simulator.probe import Interleaved, RtspProbe
from appliance.simulator.server import SimCamera, SimulatorServer
from tests.simulator_support import TINY, TINY_FPS, TINY_GOP, cache_dir
from tests.test_simulator_rtp import depacketize

USER, PASSWORD = "admin", "s3cret-Pa55"
FFMPEG_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}
SIZES = {"main": (1280, 720), "sub": (640, 360)}
LOOP_FRAMES = round(TINY.duration * TINY_FPS)


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


def make_server(cache: Path, username: str | None = None, password: str | None = None) -> SimulatorServer:
    cameras = [SimCamera("cam1", TINY), SimCamera("cam2", TINY, phase=1.0)]
    return SimulatorServer(
        cameras, username=username, password=password, fps=TINY_FPS, gop_seconds=TINY_GOP, cache_dir=cache
    )


@pytest.fixture
async def server(sim_cache: Path) -> AsyncIterator[SimulatorServer]:
    srv = make_server(sim_cache)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def auth_server(sim_cache: Path) -> AsyncIterator[SimulatorServer]:
    srv = make_server(sim_cache, username=USER, password=PASSWORD)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def probe(url: str) -> RtspProbe:
    p = RtspProbe(url)
    await p.connect()
    return p


async def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ handshake ---


async def test_options_and_describe(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1", "main"))
    try:
        options = await p.request("OPTIONS")
        assert options.status == 200
        assert {"DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER"} <= {
            m.strip() for m in options.headers["public"].split(",")
        }
        describe = await p.request("DESCRIBE", headers={"Accept": "application/sdp"})
        assert describe.status == 200 and describe.headers["content-type"] == "application/sdp"
        assert describe.headers["content-base"] == server.url("cam1", "main") + "/"
        sdp = describe.body.decode()
        sprop = sdp.split("sprop-parameter-sets=")[1].split("\r\n")[0]
        sps = base64.b64decode(sprop.split(",")[0])
        assert h264.nal_type(sps) == h264.NAL_SPS
        assert sps in {loop.sps for loop in server.encoded.values()}
    finally:
        await p.close()


@pytest.mark.parametrize("path", ["/cam9/main", "/cam1/hd", "/cam1", "/", "/cam1/main/trackID=0/x"])
async def test_unknown_paths_are_404(server: SimulatorServer, path: str) -> None:
    p = await probe(server.url("cam1"))
    try:
        base = server.url("cam1").rsplit("/cam1/main", 1)[0]
        assert (await p.request("DESCRIBE", base + path)).status == 404
    finally:
        await p.close()


async def test_session_errors(server: SimulatorServer) -> None:
    url = server.url("cam1", "main")
    track = url + "/trackID=0"
    p = await probe(url)
    try:
        assert (await p.request("PLAY", url)).status == 454  # no session yet
        assert (await p.request("PLAY", url, {"Session": "bogus"})).status == 454
        udp = {"Transport": "RTP/AVP;unicast;client_port=5000-5001"}
        assert (await p.request("SETUP", track, udp)).status == 461
        tcp = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        setup = await p.request("SETUP", track, tcp)
        assert setup.status == 200
        assert setup.headers["session"].endswith(";timeout=60")
        assert "interleaved=0-1" in setup.headers["transport"]
        session = setup.headers["session"].split(";")[0]
        assert (await p.request("SETUP", track, {**tcp, "Session": "nope"})).status == 454
        other = server.url("cam2", "main") + "/trackID=0"
        assert (await p.request("SETUP", other, {**tcp, "Session": session})).status == 459
        p.session = None  # a second SETUP without the session header
        assert (await p.request("SETUP", track, tcp)).status == 455
        p.session = session
        assert (await p.request("PLAY", server.url("cam2", "main"))).status == 459
        assert (await p.request("PAUSE", url)).status == 501
        assert (await p.request("TEARDOWN", url, {"Session": "nope"})).status == 454
        assert (await p.request("GET_PARAMETER", url, {"Session": "nope"})).status == 454
        assert (await p.request("GET_PARAMETER", url)).status == 200
        assert (await p.request("TEARDOWN", url)).status == 200
        assert (await p.request("PLAY", url)).status == 454  # the session is gone
    finally:
        await p.close()


async def test_malformed_request_gets_400_and_the_connection_goes_on(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1"))
    try:
        await p.send_raw(b"HELLO THERE\r\nCSeq: 9\r\n\r\n")
        reply = await p.response()
        assert reply.status == 400 and reply.headers["cseq"] == "9"
        await p.send_raw(b"\x16\x03\x01\x00\x05hello\r\n\r\n")
        assert (await p.response()).status == 400
        assert (await p.request("OPTIONS")).status == 200
        # A body length that cannot be trusted leaves the stream out of step: answer, then close.
        await p.send_raw(
            b"SET_PARAMETER " + server.url("cam1").encode() + b" RTSP/1.0\r\nCSeq: 5\r\nContent-Length: x\r\n\r\n"
        )
        assert (await p.response()).status == 400
        with pytest.raises(asyncio.IncompleteReadError):
            await p.read()
    finally:
        await p.close()


async def test_oversized_request_head_is_refused(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1"))
    try:
        await p.send_raw(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
        assert (await p.response()).status == 400
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await p.read()
    finally:
        await p.close()


async def test_request_body_is_read_and_skipped(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1"))
    try:
        await p.send_raw(
            b"GET_PARAMETER " + server.url("cam1").encode() + b" RTSP/1.0\r\nCSeq: 1\r\n"
            b"Content-Length: 10\r\n\r\nposition\r\n"
        )
        assert (await p.response()).status == 200
        assert (await p.request("OPTIONS")).status == 200
    finally:
        await p.close()


# ---------------------------------------------------------------------------------- stream ---


def parse_rtp(data: bytes) -> tuple[int, int, int, bool, bytes]:
    seq, ts, ssrc = struct.unpack(">HII", data[2:12])
    return seq, ts, ssrc, bool(data[1] & 0x80), data[12:]


@pytest.mark.slow
async def test_rtp_stream_is_decodable_and_runs_on_across_the_loop_wrap(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1", "main"))
    try:
        play = await p.play()
        info = dict(kv.split("=", 1) for kv in play.headers["rtp-info"].split(";"))
        assert info["url"] == server.url("cam1", "main") + "/trackID=0"
        packets: list[tuple[int, int, int, bool, bytes]] = []
        async with asyncio.timeout(10):
            while len({ts for _, ts, _, _, _ in packets}) < LOOP_FRAMES + 6:
                message = await p.read()
                assert isinstance(message, Interleaved) and message.channel == 0
                packets.append(parse_rtp(message.data))
        seqs = [s for s, *_ in packets]
        assert seqs[0] == int(info["seq"]) and packets[0][1] == int(info["rtptime"])
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
        assert len({ssrc for _, _, ssrc, _, _ in packets}) == 1
        # One timestamp per picture, 90 kHz / fps apart, marker on each picture's last packet.
        pictures: list[list[bytes]] = [[]]
        stamps = [packets[0][1]]
        for _seq, ts, _, marker, payload in packets:
            if ts != stamps[-1]:
                assert not pictures[-1], "a picture ended without its marker bit"
                stamps.append(ts)
            pictures[-1].append(payload)
            if marker:
                pictures.append([])
        assert all((b - a) % 2**32 == 90000 // TINY_FPS for a, b in itertools.pairwise(stamps))
        nal_units = [depacketize(payloads) for payloads in pictures[:-1]]  # the last one is unfinished
        assert h264.nal_type(nal_units[0][0]) == h264.NAL_SPS  # the client starts on a keyframe
        codec = av.CodecContext.create("h264", "r")
        decoded = []
        for nals in nal_units:
            decoded += codec.decode(av.Packet(h264.join_annexb(nals)))
        assert len(decoded) >= LOOP_FRAMES + 4  # through the wrap without a decoding gap
        assert {(f.width, f.height) for f in decoded} == {SIZES["main"]}
    finally:
        await p.close()


async def test_keepalive_and_teardown(server: SimulatorServer) -> None:
    p = await probe(server.url("cam1", "sub"))
    try:
        await p.play()
        assert isinstance(await p.read(), Interleaved)
        [client] = server.clients()
        assert client.stream == "cam1/sub"
        keepalive = await p.request("GET_PARAMETER")
        assert keepalive.status == 200 and keepalive.headers["session"].startswith(p.session or "?")
        assert (await p.request("TEARDOWN")).status == 200
        assert server.clients() == []
        assert await p.drain(0.4) == 0  # nothing after the TEARDOWN answer
    finally:
        await p.close()


async def test_drop_connections_cuts_clients_and_the_server_stays_up(server: SimulatorServer) -> None:
    clients = [await probe(server.url("cam1", "main")), await probe(server.url("cam2", "sub"))]
    try:
        for c in clients:
            await c.play()
        assert await server.drop_connections() == 2
        for c in clients:
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                async with asyncio.timeout(5):
                    while True:
                        await c.read()
        again = await probe(server.url("cam1", "main"))
        clients.append(again)
        await again.play()
        assert isinstance(await again.read(), Interleaved)
    finally:
        for c in clients:
            await c.close()


async def test_stop_and_start_again_on_the_same_port(server: SimulatorServer) -> None:
    port = server.port
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await probe(server.url("cam1"))
    assert await server.start() == port
    p = await probe(server.url("cam1"))
    try:
        await p.play()
        assert isinstance(await p.read(), Interleaved)
    finally:
        await p.close()


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_dropped_then_disconnected(
    server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "MAX_CLIENT_BUFFER", 32 * 1024)
    monkeypatch.setattr(stream, "STALL_TIMEOUT", 0.5)
    monkeypatch.setattr(server_module, "SOCKET_SEND_BUFFER", 16 * 1024)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the kernel does not absorb seconds of video
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    p = RtspProbe(server.url("cam1", "main"))
    await p.connect(sock)
    try:
        await p.play()
        # Now read nothing. The server drops frames once 32 KiB are queued, then gives up.
        await wait_for(lambda: any(c.frames_dropped for c in server.clients()), timeout=15)
        await wait_for(lambda: not server.clients(), timeout=5)
        other = await probe(server.url("cam1", "main"))  # the stream itself carries on
        try:
            await other.play()
            assert isinstance(await other.read(), Interleaved)
        finally:
            await other.close()
    finally:
        await p.close()


# -------------------------------------------------------------------------- authentication ---


async def test_digest_auth_is_required_except_for_options(
    auth_server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    anonymous = await probe(auth_server.url("cam1"))
    wrong = await probe(auth_server.url("cam1").replace("rtsp://", f"rtsp://{USER}:guess@"))
    right = await probe(auth_server.url("cam1", with_credentials=True))
    try:
        assert (await anonymous.request("OPTIONS")).status == 200
        denied = await anonymous.request("DESCRIBE")
        assert denied.status == 401
        challenge = denied.headers["www-authenticate"]
        assert challenge.startswith("Digest ") and 'realm="' in challenge and "nonce=" in challenge
        assert PASSWORD not in challenge
        assert (await wrong.request("DESCRIBE")).status == 401
        await right.play()
        assert isinstance(await right.read(), Interleaved)
        assert (await right.request("GET_PARAMETER")).status == 200
    finally:
        for c in (anonymous, wrong, right):
            await c.close()
    assert PASSWORD not in caplog.text


def test_url_quotes_credentials() -> None:
    srv = SimulatorServer([SimCamera("cam1", TINY)], username="us er", password="p@ss:w/rd", port=8554)
    assert srv.url("cam1", "sub", with_credentials=True) == "rtsp://us%20er:p%40ss%3Aw%2Frd@127.0.0.1:8554/cam1/sub"
    assert srv.url("cam1") == "rtsp://127.0.0.1:8554/cam1/main"
    with pytest.raises(KeyError):
        srv.url("cam9")
    with pytest.raises(KeyError):
        srv.url("cam1", "hd")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"cameras": []}, "at least one camera"),
        ({"cameras": [SimCamera("a", TINY), SimCamera("a", TINY)]}, "unique"),
        ({"cameras": [SimCamera("a/b", TINY)]}, "part of a URL"),
        ({"cameras": [SimCamera("a", TINY)], "username": "u"}, "both a username and a password"),
    ],
)
def test_bad_server_settings_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        SimulatorServer(**kwargs)  # type: ignore[arg-type]


async def test_unknown_scene_name_is_refused_at_start(sim_cache: Path) -> None:
    srv = SimulatorServer([SimCamera("cam1", "no_such_scene")], cache_dir=sim_cache)
    with pytest.raises(ValueError, match="unknown scene 'no_such_scene'"):
        await srv.start()


async def test_scene_clock_tells_where_each_camera_is(server: SimulatorServer) -> None:
    assert server.scene("cam1") is TINY
    assert server.loop_duration("cam1") == TINY.duration
    lag = (server.scene_time("cam2") - server.scene_time("cam1")) % TINY.duration
    assert lag == pytest.approx(1.0, abs=0.05)  # cam2 was started 1 s into its loop
    t = server.scene_time("cam1")
    await asyncio.sleep(0.3)
    assert (server.scene_time("cam1") - t) % TINY.duration == pytest.approx(0.3, abs=0.1)


# ------------------------------------------------------------------------- FFmpeg clients ---


def play_with_pyav(url: str, frames: int) -> list[av.VideoFrame]:
    decoded = []
    with av.open(url, options=FFMPEG_OPTIONS) as container:
        for frame in container.decode(video=0):
            decoded.append(frame)
            if len(decoded) >= frames:
                break
    return decoded


@pytest.mark.slow
@pytest.mark.parametrize("name", ["main", "sub"])
async def test_pyav_plays_both_streams_across_the_loop_wrap(server: SimulatorServer, name: str) -> None:
    frames = await asyncio.to_thread(play_with_pyav, server.url("cam1", name), LOOP_FRAMES + 6)
    assert {(f.width, f.height) for f in frames} == {SIZES[name]}
    # FFmpeg leaves the very first picture without a time (it does so with every RTSP server).
    pts = [f.pts for f in frames[1:]]
    assert None not in pts
    stamps = [int(p or 0) for p in pts]
    assert all(b > a for a, b in itertools.pairwise(stamps)), stamps
    assert stamps[-1] - stamps[0] == pytest.approx((len(stamps) - 1) * 90000 / TINY_FPS)
    lumas = [float(np.asarray(f.to_ndarray(format="gray")).mean()) for f in frames]
    assert max(lumas) - min(lumas) < 30  # a real picture of the shop, not garbage


@pytest.mark.slow
async def test_pyav_with_wrong_and_right_password(auth_server: SimulatorServer) -> None:
    wrong = auth_server.url("cam1", "sub").replace("rtsp://", f"rtsp://{USER}:guess@")
    with pytest.raises(av.error.HTTPUnauthorizedError):
        await asyncio.to_thread(play_with_pyav, wrong, 1)
    with pytest.raises(av.error.HTTPUnauthorizedError):
        await asyncio.to_thread(play_with_pyav, auth_server.url("cam1", "sub"), 1)
    [frame] = await asyncio.to_thread(play_with_pyav, auth_server.url("cam1", "sub", with_credentials=True), 1)
    assert (frame.width, frame.height) == SIZES["sub"]


async def ffprobe(url: str) -> dict[str, object]:
    ffprobe_bin = shutil.which("ffprobe")
    if ffprobe_bin is None:
        pytest.skip("ffprobe is missing: install Debian's ffmpeg package (`make test` does) to run this test")
    proc = await asyncio.create_subprocess_exec(
        ffprobe_bin, "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v", "-count_frames",
        "-read_intervals", "%+1.5", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
        "-of", "json", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    [info] = json.loads(out)["streams"]
    assert isinstance(info, dict)
    return info


@pytest.mark.slow
async def test_ffprobe_reads_main_and_sub(server: SimulatorServer) -> None:
    infos = await asyncio.gather(*(ffprobe(server.url("cam2", name)) for name in SIZES))
    for info, (width, height) in zip(infos, SIZES.values(), strict=True):
        assert (info["codec_name"], info["width"], info["height"]) == ("h264", width, height)
        assert int(str(info["nb_read_frames"])) >= TINY_FPS // 2
