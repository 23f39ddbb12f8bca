"""Encoding a scene loop with libx264 and caching the result on disk."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from appliance.simulator import h264
from appliance.simulator.encode import (
    CACHE_KEEP_DAYS,
    MAIN,
    SUB,
    EncodeSettings,
    cache_key,
    encode_loop,
    load_or_encode,
)
from appliance.simulator.render import Renderer
from appliance.simulator.scenes import SCENES
from tests.simulator_support import TINY, TINY_FPS, TINY_GOP

SETTINGS = EncodeSettings(SUB, TINY_FPS, TINY_GOP)


def decode(units: list[bytes]) -> list[np.ndarray]:
    codec = av.CodecContext.create("h264", "r")
    frames = []
    for data in units:
        frames += [f.to_ndarray(format="gray") for f in codec.decode(av.Packet(data))]
    frames += [f.to_ndarray(format="gray") for f in codec.decode(None)]
    return frames


def test_encoded_loop_has_regular_keyframes_with_parameter_sets() -> None:
    progress: list[float] = []
    loop = encode_loop(TINY, SETTINGS, lambda label, done: progress.append(done))
    assert len(loop.units) == 20
    assert [i for i, u in enumerate(loop.units) if u.keyframe] == [0, 5, 10, 15]
    for unit in loop.units:
        kinds = [h264.nal_type(n) for n in unit.nals]
        if unit.keyframe:
            assert kinds[:2] == [h264.NAL_SPS, h264.NAL_PPS] and h264.NAL_IDR in kinds
        else:
            assert h264.NAL_SPS not in kinds and h264.NAL_IDR not in kinds
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert loop.label == "tiny_walk sub 640x360@10" and loop.duration == 2.0


def test_a_scene_always_encodes_to_the_same_stream() -> None:
    """Tests replay encoded scenes and assert what the detector makes of them: the stream must not
    depend on how the encoder's threads were scheduled (a night scene's noise under the bitrate cap showed it)."""
    scene, settings = SCENES["night_noise"], EncodeSettings(SUB)
    first, second = encode_loop(scene, settings), encode_loop(scene, settings)
    assert [u.nals for u in first.units] == [u.nals for u in second.units]


def test_the_stream_decodes_to_the_rendered_pictures() -> None:
    loop = encode_loop(TINY, SETTINGS)
    frames = decode([h264.join_annexb(list(u.nals)) for u in loop.units])
    assert len(frames) == 20 and frames[0].shape == (360, 640)
    renderer = Renderer(TINY, 640, 360)

    def psnr(decoded: np.ndarray, index: int) -> float:
        mse = float(((decoded.astype(float) - renderer.frame(index, TINY_FPS).y) ** 2).mean())
        return float(10 * np.log10(255**2 / mse))

    # A camera-like bitrate cap on a noisy, textured shop: good, not perfect.
    assert psnr(frames[10], 10) > 27
    assert psnr(frames[10], 10) > psnr(frames[10], 3) + 3  # it is this frame, not a neighbour


def test_cache_returns_the_same_loop_without_encoding(tmp_path: Path) -> None:
    first = load_or_encode(TINY, SETTINGS, tmp_path)
    assert not first.from_cache
    assert list(tmp_path.glob("*.h264loop"))
    calls: list[float] = []
    second = load_or_encode(TINY, SETTINGS, tmp_path, lambda label, done: calls.append(done))
    assert second.from_cache and calls == []
    assert second.units == first.units and (second.sps, second.pps) == (first.sps, first.pps)
    assert second.encode_seconds == pytest.approx(first.encode_seconds)


def test_damaged_cache_is_encoded_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_or_encode(TINY, SETTINGS, tmp_path)
    [path] = tmp_path.glob("*.h264loop")
    path.write_bytes(path.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING):
        again = load_or_encode(TINY, SETTINGS, tmp_path)
    assert not again.from_cache and "unreadable" in caplog.text
    assert load_or_encode(TINY, SETTINGS, tmp_path).from_cache  # and the file was repaired


def test_unwritable_cache_still_serves(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING):
        loop = load_or_encode(TINY, SETTINGS, blocker)
    assert len(loop.units) == 20 and "cannot cache" in caplog.text


def test_cache_key_depends_on_scene_and_settings() -> None:
    keys = {
        cache_key(TINY, SETTINGS),
        cache_key(replace(TINY, noise_day=2.0), SETTINGS),
        cache_key(TINY, EncodeSettings(MAIN, TINY_FPS, TINY_GOP)),
        cache_key(TINY, EncodeSettings(SUB, TINY_FPS, 1.0)),
        cache_key(TINY, EncodeSettings(SUB, 15, TINY_GOP)),
    }
    assert len(keys) == 5
    assert cache_key(TINY, SETTINGS) == cache_key(replace(TINY), EncodeSettings(SUB, TINY_FPS, TINY_GOP))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fps"):
        EncodeSettings(SUB, 0)
    with pytest.raises(ValueError, match="gop"):
        EncodeSettings(SUB, 10, 0.01)


def test_loops_unused_for_a_month_are_pruned_when_a_new_one_is_cached(tmp_path: Path) -> None:
    stale, recent = tmp_path / "old.h264loop", tmp_path / "recent.h264loop"
    for path in (stale, recent):
        path.write_bytes(b"x")
    month_ago = time.time() - (CACHE_KEEP_DAYS + 1) * 86400
    os.utime(stale, (month_ago, month_ago))
    load_or_encode(TINY, SETTINGS, tmp_path)
    assert not stale.exists() and recent.exists()
