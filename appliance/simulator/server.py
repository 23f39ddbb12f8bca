"""The simulated cameras' RTSP server: many cameras on one port, RTP interleaved over TCP.

Each camera has two streams, `rtsp://HOST:PORT/<camera_id>/main` (1280×720) and `.../sub`
(640×360). The server answers OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN and GET_PARAMETER,
optionally behind Digest authentication; one connection holds at most one session, which ends
with TEARDOWN or with the connection. Scenes are encoded (or loaded from the cache) before the
server listens.

    server = SimulatorServer([SimCamera("cam1", "store_day_person")])
    port = await server.start()
    url = server.url("cam1", "main")
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from appliance.simulator import rtsp
from appliance.simulator.digest import AuthResult, DigestAuth
from appliance.simulator.encode import (
    PROFILES,
    EncodedLoop,
    EncodeSettings,
    Progress,
    cache_key,
    load_or_encode,
)
from appliance.simulator.rtp import PacketizedLoop
from appliance.simulator.rtsp import RtspError, RtspRequest
from appliance.simulator.scene import Scene
from appliance.simulator.scenes import DEFAULT_SCENE, get_scene
from appliance.simulator.sdp import TRACK_CONTROL, VideoDescription, build_sdp
from appliance.simulator.stream import FrameClock, LiveStream, Sink

log = logging.getLogger(__name__)

SESSION_TIMEOUT = 60
"""Seconds announced in the Session header; clients send a keep-alive within it."""
IDLE_GRACE = 10.0
"""Extra seconds of silence allowed beyond SESSION_TIMEOUT before a connection is closed."""
SOCKET_SEND_BUFFER = 256 * 1024
"""Kernel send buffer of each client socket (Linux doubles it). Fixed rather than auto-tuned
(up to 4 MiB), so that a client that stops reading holds a bounded amount of memory in the
kernel too, and drops begin within about a second (see stream.MAX_CLIENT_BUFFER)."""
ENCODE_WORKERS = 2
"""Loops encoded at the same time on a first start (the appliance has two cores)."""
PUBLIC_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class SimCamera:
    """A simulated camera: its id in the URL, its scene (a name from SCENES or a Scene), and
    where in the scene's loop it is when the server starts (s), so cameras need not be in step."""

    camera_id: str
    scene: Scene | str = DEFAULT_SCENE
    phase: float = 0.0

    def resolved_scene(self) -> Scene:
        return get_scene(self.scene) if isinstance(self.scene, str) else self.scene


@dataclass(frozen=True)
class ClientInfo:
    stream: str
    """`<camera_id>/<main|sub>`"""
    peer: str
    frames_sent: int
    frames_dropped: int
    """Frames skipped because the client did not read fast enough."""


@dataclass(frozen=True)
class _Stream:
    live: LiveStream
    description: VideoDescription


@dataclass(frozen=True)
class _Camera:
    scene: Scene
    streams: dict[str, _Stream]


@dataclass
class _Session:
    session_id: str
    stream: LiveStream
    channel: int
    sink: Sink | None = None


class SimulatorServer:
    def __init__(
        self,
        cameras: Sequence[SimCamera],
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        *,
        fps: int = 15,
        gop_seconds: float = 1.0,
        cache_dir: Path | None = None,
        progress: Progress | None = None,
        session_timeout: int = SESSION_TIMEOUT,
    ) -> None:
        if not cameras:
            raise ValueError("a simulator needs at least one camera")
        ids = [c.camera_id for c in cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        for camera_id in ids:
            if not CAMERA_ID.match(camera_id):
                raise ValueError(f"camera id {camera_id!r} must be letters, digits, '-' or '_' (it is part of a URL)")
        if (username is None) != (password is None):
            raise ValueError("give both a username and a password, or neither")
        self._specs = list(cameras)
        self.host = host
        self._port = port
        self.username = username
        self._password = password
        self.auth = DigestAuth(username, password) if username is not None and password is not None else None
        self.fps = fps
        self.gop_seconds = gop_seconds
        self.cache_dir = cache_dir
        self.progress = progress
        self.session_timeout = session_timeout
        self.encoded: dict[str, EncodedLoop] = {}
        """The encoded loops, by cache key (one per distinct scene and stream profile)."""
        self._cameras: dict[str, _Camera] = {}
        self._clock: FrameClock | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        return self._port

    async def _prepare(self) -> FrameClock:
        """Encode (or load) every loop, off the event loop, and build the live streams."""
        scenes = {spec.camera_id: spec.resolved_scene() for spec in self._specs}
        jobs: dict[str, tuple[Scene, EncodeSettings]] = {}
        keys: dict[tuple[str, str], str] = {}
        for camera_id, scene in scenes.items():
            for name, profile in PROFILES.items():
                settings = EncodeSettings(profile, self.fps, self.gop_seconds)
                key = keys[camera_id, name] = cache_key(scene, settings)
                jobs[key] = (scene, settings)
        workers = asyncio.Semaphore(ENCODE_WORKERS)

        async def prepare(key: str, scene: Scene, settings: EncodeSettings) -> PacketizedLoop:
            async with workers:
                self.encoded[key] = await asyncio.to_thread(
                    load_or_encode, scene, settings, self.cache_dir, self.progress
                )
                return await asyncio.to_thread(PacketizedLoop, self.encoded[key].units)

        loops = await asyncio.gather(*(prepare(key, *job) for key, job in jobs.items()))
        packetized = dict(zip(jobs, loops, strict=True))

        clock = FrameClock(self.fps, asyncio.get_running_loop().time)
        for spec in self._specs:
            scene = scenes[spec.camera_id]
            streams = {}
            for name, profile in PROFILES.items():
                key = keys[spec.camera_id, name]
                encoded = self.encoded[key]
                live = LiveStream(f"{spec.camera_id}/{name}", packetized[key], self.fps, round(spec.phase * self.fps))
                title = f"{spec.camera_id} {name}"
                description = VideoDescription(encoded.sps, encoded.pps, profile.width, profile.height, self.fps, title)
                streams[name] = _Stream(live, description)
                clock.streams.append(live)
            self._cameras[spec.camera_id] = _Camera(scene, streams)
        return clock

    async def start(self) -> int:
        """Encode or load the scenes, then listen; returns the port. After stop(), starts again
        on the same port with the same streams (a camera that comes back)."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        if self._clock is None:
            self._clock = await self._prepare()
        self._server = await asyncio.start_server(self._accept, self.host, self._port, limit=rtsp.MAX_HEAD_BYTES)
        self._port = self._server.sockets[0].getsockname()[1]
        self._clock_task = asyncio.create_task(self._clock.run(), name="simulator-clock")
        self._clock_task.add_done_callback(_report_crash)
        log.info("simulator serving %d cameras on %s:%d", len(self._cameras), self.host, self._port)
        return self._port

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is None:
            return
        self._server.close()
        await self.drop_connections()
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
            self._clock_task = None
        await self._server.wait_closed()
        self._server = None

    async def drop_connections(self) -> int:
        """Cut every client connection (as a camera reboot or a network fault would); returns
        how many there were. The server keeps listening, so clients may reconnect."""
        connections = list(self._connections)
        for conn in connections:
            conn.abort()
        for conn in connections:
            await conn.closed.wait()
        return len(connections)

    def clients(self) -> list[ClientInfo]:
        """Who is playing what right now."""
        infos = []
        for conn in self._connections:
            session = conn.session
            if session is not None and (sink := session.sink) is not None:
                name = session.stream.name
                infos.append(ClientInfo(name, conn.peer, sink.frames_sent, sink.frames_dropped))
        return infos

    def url(self, camera_id: str, stream: str = "main", *, with_credentials: bool = False) -> str:
        """The stream's URL; with_credentials puts the username and password into it."""
        if camera_id not in {c.camera_id for c in self._specs}:
            raise KeyError(f"no simulated camera {camera_id!r}")
        if stream not in PROFILES:
            raise KeyError(f"no stream {stream!r}; choose one of {', '.join(PROFILES)}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        userinfo = ""
        if with_credentials and self.username is not None and self._password is not None:
            userinfo = f"{quote(self.username, safe='')}:{quote(self._password, safe='')}@"
        return f"rtsp://{userinfo}{host}:{self._port}/{camera_id}/{stream}"

    def scene(self, camera_id: str) -> Scene:
        return self._camera(camera_id).scene

    def scene_time(self, camera_id: str) -> float:
        """Seconds into the camera's scene loop right now (what the camera shows now)."""
        camera = self._camera(camera_id)
        assert self._clock is not None
        stream = camera.streams["main"].live
        frame = self._clock.elapsed_frames() + stream.phase_frames
        return (frame % len(stream.loop)) / self.fps

    def loop_start(self, camera_id: str) -> datetime:
        """When (UTC) the camera's current pass through its loop began: a happening at scene time t
        is shown at loop_start + t, and again every loop duration."""
        return datetime.now(UTC) - timedelta(seconds=self.scene_time(camera_id))

    def loop_duration(self, camera_id: str) -> float:
        return len(self._camera(camera_id).streams["main"].live.loop) / self.fps

    def _camera(self, camera_id: str) -> _Camera:
        try:
            return self._cameras[camera_id]
        except KeyError:
            raise KeyError(f"no simulated camera {camera_id!r} (or the server was not started)") from None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.serve()
        finally:
            self._connections.discard(conn)

    def _resolve(self, request: RtspRequest, *, track_allowed: bool) -> _Stream:
        """The stream a request's URL names, or 404."""
        parts = request.path.split("/")
        if track_allowed and len(parts) == 3 and parts[2] == TRACK_CONTROL:
            parts = parts[:2]
        if len(parts) == 2 and parts[0] in self._cameras and parts[1] in PROFILES:
            return self._cameras[parts[0]].streams[parts[1]]
        raise RtspError(404, f"no stream at /{request.path}; streams are /<camera>/main and /<camera>/sub")


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the simulator's frame clock failed; streams stopped", exc_info=exc)


class _Connection:
    """One client's RTSP connection: requests in, responses and RTP data out."""

    def __init__(self, server: SimulatorServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.session: _Session | None = None
        self.closed = asyncio.Event()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def serve(self) -> None:
        idle = self.server.session_timeout + IDLE_GRACE
        try:
            while True:
                async with asyncio.timeout(idle):
                    first = await self.reader.readexactly(1)
                    if first == b"$":
                        # RTCP receiver reports: read and dropped; they prove the client is alive.
                        header = await self.reader.readexactly(3)
                        await self.reader.readexactly(int.from_bytes(header[1:3], "big"))
                        continue
                    head = first + await self.reader.readuntil(b"\r\n\r\n")
                    response, keep_open = await self._answer(head)
                self.writer.write(response)
                await self.writer.drain()
                if not keep_open:
                    break
        except TimeoutError:
            log.info("closing RTSP connection from %s: silent for %.0f s", self.peer, idle)
        except asyncio.LimitOverrunError:
            # The rest of the oversized head is still unread, so the connection cannot go on.
            self.writer.write(rtsp.build_response(400, None))
            log.info("closing RTSP connection from %s: request head too long", self.peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away; nothing to answer
        finally:
            self._end_session()
            self.writer.close()
            self.closed.set()

    async def _answer(self, head: bytes) -> tuple[bytes, bool]:
        """The response to one request, and whether the connection stays open after it."""
        try:
            request = rtsp.parse_head(head)
        except RtspError as exc:
            log.info("bad RTSP request from %s: %s", self.peer, exc)
            return rtsp.build_response(exc.status, rtsp.cseq_of(head), exc.headers), True
        try:
            length = request.content_length
        except RtspError as exc:
            # Without a usable body length the next request cannot be found: answer and close.
            log.info("bad RTSP request from %s: %s", self.peer, exc)
            return rtsp.build_response(exc.status, request.cseq, exc.headers), False
        if length:
            request = RtspRequest(request.method, request.uri, request.headers, await self.reader.readexactly(length))
        try:
            return self._respond(request), True
        except RtspError as exc:
            if exc.status != 401 or request.header("authorization"):
                log.info("RTSP %s %s from %s: %s", request.method, request.path, self.peer, exc)
            return rtsp.build_response(exc.status, request.cseq, exc.headers), True

    def _check_auth(self, request: RtspRequest) -> None:
        auth = self.server.auth
        if auth is None or request.method == "OPTIONS":
            return
        result = auth.check(request.method, request.uri, request.header("authorization"))
        if result is not AuthResult.OK:
            challenge = auth.challenge(stale=result is AuthResult.STALE)
            raise RtspError(401, f"credentials {result.value}", [("WWW-Authenticate", challenge)])

    def _respond(self, request: RtspRequest) -> bytes:
        self._check_auth(request)
        handler = {
            "OPTIONS": self._options,
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
        }.get(request.method)
        if handler is None:
            raise RtspError(501, f"method {request.method} is not supported", [("Public", PUBLIC_METHODS)])
        return handler(request)

    def _ok(self, request: RtspRequest, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
        return rtsp.build_response(200, request.cseq, headers, body)

    def _session_header(self) -> tuple[str, str]:
        assert self.session is not None
        return "Session", f"{self.session.session_id};timeout={self.server.session_timeout}"

    def _own_session(self, request: RtspRequest) -> _Session:
        """The session a request names, which must be this connection's; else 454."""
        given = request.header("session")
        if given is None:
            raise RtspError(454, f"{request.method} needs a Session header")
        session_id = given.split(";")[0].strip()
        if self.session is None or self.session.session_id != session_id:
            raise RtspError(454, f"no session {session_id[:32]!r} on this connection")
        return self.session

    def _options(self, request: RtspRequest) -> bytes:
        return self._ok(request, [("Public", PUBLIC_METHODS)])

    def _describe(self, request: RtspRequest) -> bytes:
        stream = self.server._resolve(request, track_allowed=False)
        local = self.writer.get_extra_info("sockname")
        address = local[0] if isinstance(local, tuple) else self.server.host
        sdp = build_sdp(stream.description, session_id=stream.live.ssrc, server_address=address).encode()
        base = request.uri.split("?")[0].rstrip("/") + "/"
        return self._ok(request, [("Content-Base", base), ("Content-Type", "application/sdp")], sdp)

    def _setup(self, request: RtspRequest) -> bytes:
        stream = self.server._resolve(request, track_allowed=True).live
        rtp_channel, rtcp_channel = rtsp.interleaved_channels(request.header("transport"))
        if request.header("session") is not None:
            session = self._own_session(request)
            if session.stream is not stream:
                raise RtspError(459, "a session carries one stream; SETUP the other one on a new connection")
            if session.sink is not None:
                raise RtspError(455, "cannot change the transport of a playing session")
            session.channel = rtp_channel
        elif self.session is not None:
            raise RtspError(455, "this connection already has a session; send its Session header")
        else:
            self.session = _Session(secrets.token_hex(8), stream, rtp_channel)
        transport = f"RTP/AVP/TCP;unicast;interleaved={rtp_channel}-{rtcp_channel};ssrc={stream.ssrc:08X}"
        return self._ok(request, [("Transport", transport), self._session_header()])

    def _play(self, request: RtspRequest) -> bytes:
        session = self._own_session(request)
        if request.path:
            stream = self.server._resolve(request, track_allowed=True).live
            if stream is not session.stream:
                raise RtspError(459, "PLAY names a stream this session did not set up")
        clock = self.server._clock
        assert clock is not None
        seq, rtptime = session.stream.start_of(clock.upcoming())
        if session.sink is None:
            session.sink = Sink(self.writer.transport, session.channel, f"{self.peer} {session.stream.name}")
            session.stream.sinks.append(session.sink)
            clock.wake()
        track_url = request.uri.split("?")[0].rstrip("/")
        if not track_url.endswith(TRACK_CONTROL):
            track_url += "/" + TRACK_CONTROL
        return self._ok(
            request,
            [
                ("Range", "npt=0.000-"),
                ("RTP-Info", f"url={track_url};seq={seq};rtptime={rtptime}"),
                self._session_header(),
            ],
        )

    def _teardown(self, request: RtspRequest) -> bytes:
        self._own_session(request)
        self._end_session()
        return self._ok(request)

    def _get_parameter(self, request: RtspRequest) -> bytes:
        if request.header("session") is None:
            return self._ok(request)
        self._own_session(request)
        return self._ok(request, [self._session_header()])

    def _end_session(self) -> None:
        if self.session is not None and self.session.sink is not None:
            self.session.stream.sinks.remove(self.session.sink)
        self.session = None
