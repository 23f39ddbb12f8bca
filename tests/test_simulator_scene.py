"""Scene scripts and the frames drawn from them: the ground truth later motion tests rely on."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from appliance.simulator.render import DARK_FACTOR, Look, Renderer, YuvFrame, look_at
from appliance.simulator.scene import Box, Figure, HappeningKind, Scene, Switch, SwitchKind, Waypoint
from appliance.simulator.scenes import SCENES, get_scene, shopper

W, H = 640, 360
FPS = 15
CHANGED = 25
"""A luma difference this large is far outside the sensor noise of any scene (σ ≤ 8)."""


@cache
def renderer(name: str) -> Renderer:
    return Renderer(get_scene(name), W, H)


def frame_at(name: str, t: float) -> YuvFrame:
    return renderer(name).frame(round(t * FPS), FPS)


def luma_diff(name: str, t: float) -> np.ndarray:
    scene = get_scene(name)
    frame = frame_at(name, t)
    background = renderer(name).background(look_at(scene, t))
    return np.abs(frame.y.astype(np.int16) - background.y.astype(np.int16))


def pixels(box: Box) -> tuple[slice, slice]:
    return slice(int(box.y0 * H), int(np.ceil(box.y1 * H))), slice(int(box.x0 * W), int(np.ceil(box.x1 * W)))


# ---------------------------------------------------------------------------------- script ---


def test_timeline_lists_the_scripted_times() -> None:
    assert [(h.t, h.kind) for h in get_scene("store_day_person").timeline()] == [
        (4.0, HappeningKind.FIGURE_ENTERS),
        (14.0, HappeningKind.FIGURE_LEAVES),
    ]
    assert [(h.t, h.kind) for h in get_scene("light_switch").timeline()] == [
        (6.0, HappeningKind.LIGHT_OFF),
        (14.0, HappeningKind.LIGHT_ON),
    ]
    assert [(h.t, h.kind) for h in get_scene("ir_switch").timeline()] == [
        (6.0, HappeningKind.IR_ON),
        (14.0, HappeningKind.IR_OFF),
    ]
    assert get_scene("night_noise").timeline() == []
    demo = get_scene("demo")
    kinds = [h.kind for h in demo.timeline()]
    assert kinds.count(HappeningKind.FIGURE_ENTERS) == 2 and HappeningKind.IR_ON in kinds
    assert demo.to_dict()["timeline"][0] == {"t": 3.0, "kind": HappeningKind.FIGURE_ENTERS, "figure": 0}


def test_every_scene_starts_still_for_a_few_seconds() -> None:
    for scene in SCENES.values():
        first = min((h.t for h in scene.timeline()), default=scene.duration)
        assert first >= 3.0, scene.name


def test_figure_boxes_follow_the_enter_and_leave_times() -> None:
    scene = get_scene("store_day_person")
    assert scene.figure_boxes(3.99) == []
    assert scene.figure_boxes(4.0) == []  # exactly touching the edge
    [(index, box)] = scene.figure_boxes(4.1)
    assert index == 0 and box.x0 == 0.0 and 0 < box.x1 < 0.1
    [(_, box)] = scene.figure_boxes(9.0)
    assert 0.3 < box.x0 < box.x1 < 0.6 and 0.3 < box.y0 < box.y1 <= 1.0
    assert scene.figure_boxes(14.01) == []
    [(_, again)] = scene.figure_boxes(24.1)  # the loop repeats
    assert again.x1 == pytest.approx(scene.figure_boxes(4.1)[0][1].x1)
    assert scene.motion_intervals() == [(4.0, 14.0)]


def test_switch_states() -> None:
    light = get_scene("light_switch")
    assert [light.light_on(t) for t in (0, 5.99, 6.0, 13.9, 14.0, 19.9, 26.0)] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    ir = get_scene("ir_switch")
    assert [ir.ir_on(t) for t in (0, 6.0, 14.0)] == [False, True, False]
    assert ir.noise_sigma(1.0) == ir.noise_day and ir.noise_sigma(7.0) == ir.noise_night


def test_motion_intervals_merge_overlapping_figures() -> None:
    scene = Scene("two", 30.0, figures=(shopper(2.0, 10.0), shopper(8.0, 16.0), shopper(20.0, 27.0)))
    assert scene.motion_intervals() == [(2.0, 16.0), (20.0, 27.0)]


def test_bad_scripts_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="outside the frame"):
        Figure((Waypoint(0.0, 0.5, 0.9), Waypoint(2.0, 1.2, 0.9)))
    with pytest.raises(ValueError, match="increase"):
        Figure((Waypoint(2.0, -0.1, 0.9), Waypoint(1.0, 1.2, 0.9)))
    with pytest.raises(ValueError, match="two waypoints"):
        Figure((Waypoint(0.0, -0.1, 0.9),))
    with pytest.raises(ValueError, match="end the loop as they start"):
        Scene("x", 10.0, switches=(Switch(5.0, SwitchKind.LIGHT, False),))
    with pytest.raises(ValueError, match="outside the loop"):
        Scene("x", 10.0, switches=(Switch(12.0, SwitchKind.IR, True), Switch(13.0, SwitchKind.IR, False)))
    with pytest.raises(ValueError, match="walks outside the loop"):
        Scene("x", 10.0, figures=(shopper(5.0, 12.0),))
    with pytest.raises(ValueError, match="more than 6 s"):
        shopper(1.0, 3.0)
    with pytest.raises(ValueError, match="store_day_person"):
        get_scene("no_such_scene")


# -------------------------------------------------------------------------------- pictures ---


def test_frames_are_deterministic() -> None:
    a, b = frame_at("demo", 5.0), Renderer(get_scene("demo"), W, H).frame(5 * FPS, FPS)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert a.packed().shape == (H * 3 // 2, W)


def test_figure_changes_the_picture_where_the_script_says_and_nowhere_else() -> None:
    scene = get_scene("store_day_person")
    t = 9.0
    [(_, box)] = scene.figure_boxes(t)
    diff = luma_diff("store_day_person", t)
    inside = np.zeros_like(diff, dtype=bool)
    inside[pixels(box)] = True
    assert (diff[inside] > CHANGED).mean() > 0.3  # the figure fills a good part of its box
    assert (diff[~inside] > CHANGED).mean() == 0.0  # and nothing changes outside it
    assert diff[~inside].mean() < 2.0  # only noise


@pytest.mark.parametrize(
    "name",
    # Scenes with one figure at a time: the checks want each figure alone in the frame.
    [n for n, s in SCENES.items() if s.figures and len(s.motion_intervals()) == len(s.figures)],
)
def test_each_figure_appears_at_its_scripted_times(name: str) -> None:
    scene = get_scene(name)
    for figure in scene.figures:
        for t in (figure.enters_at - 0.2, figure.leaves_at + 0.2):
            assert (luma_diff(name, t) > CHANGED).mean() < 1e-4, (name, t)
        for t in (figure.enters_at + 0.3, (figure.enters_at + figure.leaves_at) / 2, figure.leaves_at - 0.3):
            t = round(t * FPS) / FPS
            [(_, box)] = scene.figure_boxes(t)
            assert (luma_diff(name, t)[pixels(box)] > CHANGED).mean() > 0.2, (name, t)


def test_light_off_darkens_the_whole_picture() -> None:
    lit, dark = frame_at("light_switch", 3.0), frame_at("light_switch", 8.0)
    assert look_at(get_scene("light_switch"), 8.0) is Look.DARK
    ratio = (dark.y.astype(float) - 16).mean() / (lit.y.astype(float) - 16).mean()
    assert ratio == pytest.approx(DARK_FACTOR, abs=0.05)


def test_ir_mode_is_grey() -> None:
    colour, ir = frame_at("ir_switch", 3.0), frame_at("ir_switch", 8.0)
    assert colour.u.astype(float).var() > 50 and colour.v.astype(float).var() > 50
    assert ir.u.var() == 0 and ir.v.var() == 0 and int(ir.u[0, 0]) == 128 and int(ir.v[0, 0]) == 128
    # IR pictures are flatter but not darker; the corners fall off (the illuminator's cone).
    assert ir.y.astype(float).std() < colour.y.astype(float).std()
    corner, centre = ir.y[:20, :20].mean(), ir.y[H // 2 - 10 : H // 2 + 10, W // 2 - 10 : W // 2 + 10].mean()
    assert corner < centre


def test_sensor_noise_is_stronger_at_night() -> None:
    def noise(name: str, t: float) -> float:
        frame = frame_at(name, t)
        background = renderer(name).background(look_at(get_scene(name), t))
        # The wall between the shelves: flat, never clipped.
        rows, cols = slice(int(0.15 * H), int(0.5 * H)), slice(int(0.31 * W), int(0.36 * W))
        return float((frame.y[rows, cols].astype(float) - background.y[rows, cols]).std())

    day, night = noise("store_day_person", 1.0), noise("night_noise", 1.0)
    assert day == pytest.approx(get_scene("store_day_person").noise_day, abs=0.4)
    assert night == pytest.approx(get_scene("night_noise").noise_night, abs=0.8)
    # Noise is fresh every frame (a still scene is not a still picture).
    assert not np.array_equal(frame_at("night_noise", 1.0).y, frame_at("night_noise", 1.0 + 1 / FPS).y)


def test_sizes_must_suit_yuv420() -> None:
    with pytest.raises(ValueError, match="even"):
        Renderer(get_scene("demo"), 641, 360)
