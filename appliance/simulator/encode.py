"""Encoding a scene's loop to H.264 once, and keeping the result on disk.

A simulated camera replays the same encoded loop forever, so the encoder runs once per
(scene, stream profile, fps, GOP) and the access units are cached in a file named by a hash of
everything that shapes them (the scene script, the settings, and the source of the renderer and
of this module, so that changed code never serves a stale picture). Encoding is CPU work: call
`load_or_encode` from a thread, not from the event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import av
from av.video.codeccontext import VideoCodecContext

from appliance.simulator import h264, render, scene
from appliance.simulator.h264 import AccessUnit
from appliance.simulator.render import Renderer
from appliance.simulator.scene import Scene

log = logging.getLogger(__name__)

CACHE_FORMAT = b"APPLIANCE-SIM-LOOP 1\n"
"""First line of a cache file; bump the number when the layout below changes."""
X264_PRESET = "veryfast"
"""Encoded once and replayed, so spend a little more time than ultrafast for a better picture."""
X264_PROFILE = "main"
X264_CRF = 23
"""Quality target; the VBV cap below limits the bitrate like a camera's 'max bitrate' setting."""

CACHE_KEEP_DAYS = 30
"""Cached loops not used for this long are deleted (old code versions and scenes leave files)."""

Progress = Callable[[str, float], None]
"""Called with a label and the fraction done (0..1), from the encoding thread, after each frame;
an exception it raises abandons the encoding (and propagates)."""


@dataclass(frozen=True)
class StreamProfile:
    """One of a camera's streams: its name in the URL, picture size and bitrate cap."""

    name: str
    width: int
    height: int
    max_kbps: int


MAIN = StreamProfile("main", 1280, 720, 2000)
SUB = StreamProfile("sub", 640, 360, 512)
PROFILES = {p.name: p for p in (MAIN, SUB)}


@dataclass(frozen=True)
class EncodeSettings:
    profile: StreamProfile
    fps: int = 15
    gop_seconds: float = 1.0
    """Time between keyframes; a new client waits at most this long for its first picture."""

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be 1..60, got {self.fps}")
        if self.gop_frames < 1:
            raise ValueError(f"gop_seconds={self.gop_seconds} gives no frame at {self.fps} fps")

    @property
    def gop_frames(self) -> int:
        return round(self.gop_seconds * self.fps)

    def label(self, scene_name: str) -> str:
        p = self.profile
        return f"{scene_name} {p.name} {p.width}x{p.height}@{self.fps}"


@dataclass(frozen=True)
class EncodedLoop:
    scene_name: str
    settings: EncodeSettings
    units: tuple[AccessUnit, ...]
    sps: bytes
    pps: bytes
    encode_seconds: float
    """Wall time the encoding took when it was done (also when loaded from the cache)."""
    from_cache: bool

    @property
    def duration(self) -> float:
        return len(self.units) / self.settings.fps

    @property
    def label(self) -> str:
        return self.settings.label(self.scene_name)


def frame_count(scene_: Scene, fps: int) -> int:
    return max(1, round(scene_.duration * fps))


def new_encoder(settings: EncodeSettings) -> VideoCodecContext:
    p = settings.profile
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = p.width, p.height, "yuv420p"
    codec.time_base = Fraction(1, settings.fps)
    codec.framerate = Fraction(settings.fps)
    # One thread: with x264's frame threads the rate control depends on the threads' timing, so the
    # same scene encoded twice gave different streams (and a test of the night-noise scene passed or
    # failed by chance). One thread encodes a 360p loop in about a second, and gives one slice per
    # picture, as cameras send.
    codec.thread_count = 1
    gop = settings.gop_frames
    # Not tune=zerolatency: the loop is encoded ahead of time, so lookahead costs nothing and
    # buys a better picture per bit.
    codec.options = {
        "preset": X264_PRESET,
        "profile": X264_PROFILE,
        # A keyframe exactly every GOP (never on scene cuts, so the loop's GOPs are regular),
        # with SPS/PPS repeated before each one so that a client may join at any keyframe; no
        # B-frames, like cameras, so that pictures are sent in display order.
        "x264-params": (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:bframes=0:crf={X264_CRF}"
            f":vbv-maxrate={p.max_kbps}:vbv-bufsize={p.max_kbps}"
        ),
    }
    return codec


def encode_frames(
    scene_: Scene, settings: EncodeSettings, count: int, progress: Progress | None = None
) -> list[AccessUnit]:
    """Render and encode the first `count` frames of the scene (CPU-bound)."""
    p = settings.profile
    renderer = Renderer(scene_, p.width, p.height)
    codec = new_encoder(settings)
    label = settings.label(scene_.name)

    def units_of(packets: list[av.Packet[Any]]) -> list[AccessUnit]:
        return [AccessUnit(tuple(h264.split_annexb(bytes(p))), p.is_keyframe) for p in packets]

    units: list[AccessUnit] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(renderer.frame(index, settings.fps).packed(), format="yuv420p")
        frame.pts = index
        units += units_of(codec.encode(frame))
        if progress is not None:
            progress(label, (index + 1) / count)
    units += units_of(codec.encode(None))  # flush
    return units


def encode_loop(scene_: Scene, settings: EncodeSettings, progress: Progress | None = None) -> EncodedLoop:
    """Render and encode every frame of the loop (seconds for a 720p loop)."""
    started = time.perf_counter()
    units = encode_frames(scene_, settings, frame_count(scene_, settings.fps), progress)
    return _finish(scene_.name, settings, tuple(units), time.perf_counter() - started, from_cache=False)


def _finish(
    scene_name: str,
    settings: EncodeSettings,
    units: tuple[AccessUnit, ...],
    seconds: float,
    *,
    from_cache: bool,
) -> EncodedLoop:
    if not units or not units[0].keyframe:
        raise ValueError("an encoded loop must start with a keyframe")
    first = {h264.nal_type(n): n for n in units[0].nals}
    if h264.NAL_SPS not in first or h264.NAL_PPS not in first:
        raise ValueError("the first access unit carries no SPS/PPS; the encoder must repeat headers")
    return EncodedLoop(scene_name, settings, units, first[h264.NAL_SPS], first[h264.NAL_PPS], seconds, from_cache)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "appliance-sim"


@cache
def _source_digest() -> bytes:
    digest = hashlib.sha256()
    for module in (scene, render, h264):
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.digest()


def cache_key(scene_: Scene, settings: EncodeSettings) -> str:
    doc = {"scene": scene_.to_dict(), "settings": asdict(settings), "av": av.__version__}
    digest = hashlib.sha256(_source_digest())
    digest.update(json.dumps(doc, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def _write_cache(path: Path, loop: EncodedLoop) -> None:
    header = {
        "units": [[sum(4 + len(n) for n in u.nals), u.keyframe] for u in loop.units],
        "encode_seconds": loop.encode_seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed, so that a reader (another simulator starting
    # at the same time) sees either no file or a whole one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(CACHE_FORMAT)
            out.write(json.dumps(header).encode() + b"\n")
            for unit in loop.units:
                out.write(h264.join_annexb(list(unit.nals)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, scene_name: str, settings: EncodeSettings) -> EncodedLoop:
    with path.open("rb") as f:
        if f.readline() != CACHE_FORMAT:
            raise ValueError("not a simulator loop file of this version")
        header = json.loads(f.readline())
        data = f.read()
    units = []
    offset = 0
    for length, key in header["units"]:
        units.append(AccessUnit(tuple(h264.split_annexb(data[offset : offset + length])), bool(key)))
        offset += length
    if offset != len(data):
        raise ValueError(f"truncated: {len(data)} bytes of {offset}")
    return _finish(scene_name, settings, tuple(units), float(header["encode_seconds"]), from_cache=True)


def load_or_encode(
    scene_: Scene, settings: EncodeSettings, cache_dir: Path | None = None, progress: Progress | None = None
) -> EncodedLoop:
    """The encoded loop from the cache, or freshly encoded (and then cached)."""
    path = (cache_dir or default_cache_dir()) / f"{cache_key(scene_, settings)}.h264loop"
    if path.exists():
        try:
            loop = _read_cache(path, scene_.name, settings)
            os.utime(path)  # in use: keep it from _prune
            return loop
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("encoded loop cache %s is unreadable (%s); encoding again", path, exc)
    loop = encode_loop(scene_, settings, progress)
    log.info("encoded %s: %d frames in %.1f s", settings.label(scene_.name), len(loop.units), loop.encode_seconds)
    try:
        _write_cache(path, loop)
        _prune(path.parent)
    except OSError as exc:
        log.warning("cannot cache the encoded loop in %s (%s); it will be encoded again next start", path, exc)
    return loop


def _prune(cache_dir: Path) -> None:
    too_old = time.time() - CACHE_KEEP_DAYS * 86400
    for old in cache_dir.glob("*.h264loop"):
        if old.stat().st_mtime < too_old:
            old.unlink(missing_ok=True)
