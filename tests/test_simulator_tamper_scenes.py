"""The tampering scenes' pictures: what a covered, turned or defocused camera sends, drawn from the
same script the end-to-end test reads its ground truth from."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.simulator.render import COVER_SWEEP_S, Look, Renderer
from appliance.simulator.scene import HappeningKind, Scene, Switch, SwitchKind
from appliance.simulator.scenes import SCENES, TAMPER_AT, get_scene, tampering
from tests.test_simulator_scene import FPS, H, W, frame_at, renderer


def detail(y: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: edges and texture."""
    return float(np.abs(np.diff(y.astype(np.float32), axis=1)).mean())


def off_background(name: str, t: float, *, turned: bool = False) -> float:
    """Mean absolute luma difference from the empty shop (noise only: about 1.2 by day)."""
    background = renderer(name).background(Look.DAY, turned=turned)
    return float(np.abs(frame_at(name, t).y.astype(np.float32) - background.y).mean())


def test_the_timelines_name_the_tampering() -> None:
    assert [(h.t, h.kind) for h in get_scene("tamper_covered").timeline()] == [
        (TAMPER_AT, HappeningKind.LENS_COVERED),
        (TAMPER_AT + 15, HappeningKind.LENS_UNCOVERED),
    ]
    assert [h.kind for h in get_scene("tamper_turned").timeline()] == [
        HappeningKind.CAMERA_TURNED,
        HappeningKind.CAMERA_TURNED_BACK,
    ]
    assert [h.kind for h in get_scene("tamper_defocus").timeline()] == [
        HappeningKind.DEFOCUSED,
        HappeningKind.REFOCUSED,
    ]


def test_a_covered_lens_is_one_dark_colour_after_the_hand_slid_over_it() -> None:
    before, during = frame_at("tamper_covered", TAMPER_AT - 1), frame_at("tamper_covered", TAMPER_AT + 1)
    assert off_background("tamper_covered", TAMPER_AT - 1) < 2.0
    near_median = np.abs(during.y.astype(np.int16) - int(np.median(during.y))) <= 10
    assert near_median.mean() > 0.9
    assert during.y.mean() < 50 < before.y.mean()
    # 40 % into the sweep the hand hides the left 40 % of the picture; the rest is still the shop
    # (under the covered lens's stronger noise, σ 5).
    part = frame_at("tamper_covered", TAMPER_AT + 0.4 * COVER_SWEEP_S).y.astype(np.float32)
    edge = round(0.4 * W)
    assert part[:, : edge - 4].mean() < 50
    shop = renderer("tamper_covered").background(Look.DAY).y
    assert np.abs(part[:, edge + 4 :] - shop[:, edge + 4 :]).mean() < 6.0
    # The hand is gone once it slid off again.
    assert off_background("tamper_covered", TAMPER_AT + 15 + COVER_SWEEP_S + 0.2) < 2.0


def test_a_covered_lens_is_noisier_as_the_camera_turns_its_gain_up() -> None:
    scene = get_scene("tamper_covered")
    assert scene.noise_sigma(TAMPER_AT + 1) == scene.noise_night > scene.noise_sigma(TAMPER_AT - 1)


def test_a_turned_camera_sees_another_still_view_until_it_is_put_back() -> None:
    view = renderer("tamper_turned").background(Look.DAY, turned=True).y
    shop = renderer("tamper_turned").background(Look.DAY).y
    assert np.abs(view.astype(np.float32) - shop).mean() > 20
    assert detail(view) > 0.5 * detail(shop)  # not a blank wall: shelves and goods, close up
    for t in (TAMPER_AT + 0.1, TAMPER_AT + 9, TAMPER_AT + 17.9):
        assert off_background("tamper_turned", t, turned=True) < 2.0, t
    assert off_background("tamper_turned", TAMPER_AT + 18.1) < 2.0


def test_a_defocused_lens_blurs_the_same_scene() -> None:
    sharp, blurred = frame_at("tamper_defocus", TAMPER_AT - 1), frame_at("tamper_defocus", TAMPER_AT + 1)
    assert abs(float(blurred.y.mean()) - float(sharp.y.mean())) < 2.0
    # What is left of the detail is mostly sensor noise (added after the lens).
    assert detail(blurred.y) < 0.5 * detail(sharp.y)
    assert off_background("tamper_defocus", TAMPER_AT + 15.1) < 2.0


def test_figures_are_hidden_while_the_lens_is_covered_or_the_camera_turned() -> None:
    figures = get_scene("tamper_none_busy").figures
    scene = Scene(
        "x",
        30.0,
        figures=figures,
        switches=(*tampering(SwitchKind.COVER, 5.0, 8.0), *tampering(SwitchKind.TURN, 9.0, 11.0)),
    )
    assert scene.figure_boxes(6.0) == [] and scene.figure_boxes(10.0) == []
    assert len(scene.figure_boxes(8.5)) == len(get_scene("tamper_none_busy").figure_boxes(8.5)) > 0


def test_a_defocused_figure_is_blurred_too() -> None:
    scene = Scene(
        "x", 30.0, figures=get_scene("tamper_none_busy").figures, switches=tampering(SwitchKind.DEFOCUS, 5, 9)
    )
    sharp, blurred = Renderer(get_scene("tamper_none_busy"), W, H), Renderer(scene, W, H)
    assert detail(blurred.frame(7 * FPS, FPS).y) < 0.5 * detail(sharp.frame(7 * FPS, FPS).y)


def test_the_busy_scene_has_crowds_and_a_light_switch() -> None:
    scene = get_scene("tamper_none_busy")
    crowd = max(len(scene.figure_boxes(t)) for t in np.arange(0, scene.duration, 0.1))
    assert crowd >= 4
    assert not scene.light_on(15.0) and scene.light_on(19.0)
    assert not scene.covered(15.0) and not scene.turned(15.0) and not scene.defocused(15.0)


def test_tampering_must_end_the_loop_as_it_starts() -> None:
    with pytest.raises(ValueError, match="end the loop as they start"):
        Scene("x", 10.0, switches=(Switch(5.0, SwitchKind.COVER, True),))


def test_since_switch_counts_from_the_last_switch_in_this_pass() -> None:
    scene = get_scene("tamper_covered")
    assert scene.since_switch(SwitchKind.COVER, TAMPER_AT - 1) == float("inf")
    assert scene.since_switch(SwitchKind.COVER, TAMPER_AT + 2) == pytest.approx(2.0)
    assert scene.since_switch(SwitchKind.COVER, scene.duration + TAMPER_AT + 16) == pytest.approx(1.0)
    assert scene.since_switch(SwitchKind.LIGHT, TAMPER_AT + 2) == float("inf")


def test_the_tampering_scenes_are_served_by_name() -> None:
    assert {"tamper_covered", "tamper_turned", "tamper_defocus", "tamper_none_busy"} <= set(SCENES)
