"""Shared pieces of the recorder's tests: clips encoded with PyAV, fed as if live, and checks with
independent tools (ffprobe, a full PyAV decode)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.container import InputContainer
from av.video.stream import VideoStream

from appliance.cameras.fanout import StreamFanout

CLIP_FPS = 15
CLIP_GOP = 15
"""A keyframe every second."""
CLIP_SIZE = (320, 240)


def encode_clip(
    path: Path,
    seconds: float,
    codec: str = "libx264",
    *,
    fps: int = CLIP_FPS,
    gop: int = CLIP_GOP,
    bframes: bool = False,
    size: tuple[int, int] = CLIP_SIZE,
) -> Path:
    """A clip of a bar sweeping over noise (every frame differs), encoded with PyAV."""
    width, height = size
    rng = np.random.default_rng(7)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx265":
            stream.codec_context.options = {
                "preset": "ultrafast",
                "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:log-level=error",
            }
        elif codec == "libx264":
            stream.codec_context.options = {
                "preset": "veryfast" if bframes else "ultrafast",
                "g": str(gop),
                "keyint_min": str(gop),
                "sc_threshold": "0",
                "bf": "2" if bframes else "0",
            }
        for i in range(round(seconds * fps)):
            picture = background.copy()
            x = (i * 7) % (width - 16)
            picture[:, x : x + 16] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@dataclass
class Fed:
    packets: int
    keyframes: int
    payloads: list[bytes]


def feed_clip(
    fanout: StreamFanout,
    clip: Path,
    start: datetime,
    *,
    end_session: bool = True,
    pts_jump: tuple[int, float] | None = None,
) -> Fed:
    """Publish a clip's packets as a camera would (arrival = start + media time), as fast as possible.
    `pts_jump` = (packet number, seconds): from that packet on, timestamps jump by that much."""
    fed = Fed(0, 0, [])
    with av.open(str(clip)) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        fanout.begin_session(video)
        first: int | None = None
        shift = 0
        for n, packet in enumerate(container.demux(video)):
            if packet.size == 0 or packet.pts is None:
                continue
            if pts_jump is not None and n == pts_jump[0]:
                shift = round(pts_jump[1] / packet.time_base)
            if shift:
                packet.pts += shift
                if packet.dts is not None:
                    packet.dts += shift
            first = packet.pts if first is None else first
            arrival = start + timedelta(seconds=float((packet.pts - first) * packet.time_base))
            fanout.publish(packet, arrival)
            fed.packets += 1
            fed.keyframes += packet.is_keyframe
            fed.payloads.append(bytes(packet))
        if end_session:
            fanout.end_session("end of clip")
    return fed


def ffprobe(path: Path, *args: str) -> tuple[dict[str, object], str]:
    """ffprobe's JSON answer and whatever it reported at level `error`."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(done.stdout or "{}"), done.stderr.strip()


def check_playable(path: Path) -> tuple[float, str, str]:
    """ffprobe reports no error; (duration s, codec name, codec tag)."""
    info, errors = ffprobe(path, "-show_entries", "format=duration:stream=codec_name,codec_tag_string")
    assert errors == "", f"ffprobe on {path.name}: {errors}"
    stream = info["streams"][0]  # type: ignore[index]
    return float(info["format"]["duration"]), stream["codec_name"], stream["codec_tag_string"]  # type: ignore[index]


def first_packet_flags(path: Path) -> str:
    info, errors = ffprobe(path, "-select_streams", "v", "-read_intervals", "%+#1", "-show_entries", "packet=flags")
    assert errors == ""
    return str(info["packets"][0]["flags"])  # type: ignore[index]


def decode_all(path: Path) -> tuple[int, int]:
    """(frames decoded, packets) — every packet of a file must decode to a frame."""
    with av.open(str(path)) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        frames = packets = 0
        for packet in container.demux(video):
            if packet.size:
                packets += 1
            frames += len(packet.decode())
    return frames, packets


def file_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        assert isinstance(container, InputContainer)
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def nal_units(payload: bytes, *, annex_b: bool) -> list[bytes]:
    """NAL units of an access unit framed by Annex B start codes (as RTSP delivers them) or by
    4-byte lengths (as MP4 stores them). The muxer changes the framing, never the units. Trailing
    zero bytes are not part of a unit (Annex B's trailing_zero_8bits; where a 4-byte start code's
    first zero belongs is a matter of taste), so they are left out on both sides."""
    if annex_b:
        chunks = payload.split(b"\x00\x00\x01")
    else:
        chunks, pos = [], 0
        while pos + 4 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 4], "big")
            chunks.append(payload[pos + 4 : pos + 4 + size])
            pos += 4 + size
    return [unit for chunk in chunks if (unit := chunk.rstrip(b"\x00"))]


HEVC_PARAMETER_SETS = frozenset({32, 33, 34})
"""VPS, SPS, PPS: in an `hvc1` file they live in the sample entry only, so the muxer drops the
in-band copies a camera sends before each keyframe."""


def hevc_parameter_set(unit: bytes) -> bool:
    return (unit[0] >> 1) & 0x3F in HEVC_PARAMETER_SETS


def assert_same_units(
    source: list[bytes],
    recorded: list[bytes],
    ignore: Callable[[bytes], bool] = lambda unit: False,
    *,
    source_annex_b: bool = True,
) -> None:
    """The recorded access units (from an MP4) appear, unchanged and in order, in the source (from
    RTSP, or an MP4 if `source_annex_b` is False)."""
    source_units = [[u for u in nal_units(p, annex_b=source_annex_b) if not ignore(u)] for p in source]
    recorded_units = [[u for u in nal_units(p, annex_b=False) if not ignore(u)] for p in recorded]
    assert recorded_units, "nothing recorded"
    assert recorded_units[0] in source_units, "the first recorded access unit is not in the source"
    start = source_units.index(recorded_units[0])
    for n, unit in enumerate(recorded_units):
        same = start + n < len(source_units) and source_units[start + n] == unit
        assert same, f"recorded access unit {n} of {len(recorded_units)} differs from the source's {start + n}"


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def footage_files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())
