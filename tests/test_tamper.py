"""Tamper checks on the simulator's frames at 1 fps. The tampering itself (a covered or sprayed
lens, a defocused lens, a turned camera) is made here from the rendered frames with numpy and
OpenCV, since the simulator's scenes do not script it."""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from appliance.cameras.tamper import TamperDetector, TamperEvent, TamperKind, TamperSettings
from appliance.simulator.render import Renderer
from appliance.simulator.scenes import SCENES

WIDTH, HEIGHT = 320, 180
RENDER_FPS = 5
TAMPER_FROM, TAMPER_UNTIL = 20.0, 50.0
"""When the tampering lasts in the tampered sequences (s)."""
SETTINGS = TamperSettings()

Edit = Callable[[np.ndarray, float], np.ndarray]


@functools.cache
def _loop(name: str) -> tuple[np.ndarray, ...]:
    scene = SCENES[name]
    renderer = Renderer(scene, WIDTH, HEIGHT)
    return tuple(renderer.frame(i, RENDER_FPS).y for i in range(round(scene.duration * RENDER_FPS)))


def frames(name: str, seconds: int, edit: Edit | None = None) -> list[tuple[float, np.ndarray]]:
    """One frame a second of the looping scene for `seconds`, tampered by `edit(y, t)` if given."""
    loop = _loop(name)
    out = []
    for i in range(seconds):
        t = float(i)
        y = loop[(i * RENDER_FPS) % len(loop)]
        out.append((t, edit(y, t) if edit else y))
    return out


def during(change: Callable[[np.ndarray], np.ndarray]) -> Edit:
    return lambda y, t: change(y) if TAMPER_FROM <= t < TAMPER_UNTIL else y


def _noisy(level: float, sigma: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return lambda y: np.clip(level + rng.normal(0, sigma, y.shape), 0, 255).astype(np.uint8)


def _sprayed(y: np.ndarray) -> np.ndarray:
    """Paint fog: a bright haze with a faint ghost of the scene behind it."""
    return np.clip(cv2.GaussianBlur(y, (0, 0), 12) * 0.3 + 150, 0, 255).astype(np.uint8)


def _turned(y: np.ndarray) -> np.ndarray:
    return np.roll(y, int(0.3 * y.shape[1]), axis=1)


def _defocused(y: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(y, (0, 0), 3)


def run(seq: list[tuple[float, np.ndarray]], detector: TamperDetector | None = None) -> list[TamperEvent]:
    detector = detector or TamperDetector(SETTINGS)
    events: list[TamperEvent] = []
    for t, y in seq:
        events += detector.process(y, t)
    return events


@pytest.mark.parametrize("name", ["store_day_person", "light_switch", "ir_switch", "night_noise"])
def test_people_light_and_ir_switches_are_not_tampering(name: str) -> None:
    assert run(frames(name, 60)) == []


TAMPERING: dict[str, tuple[str, Edit, TamperKind]] = {
    "lens covered (grey)": ("light_switch", during(_noisy(118, 3, 1)), TamperKind.COVERED),
    "lens covered at night (dark, noisy)": ("night_noise", during(_noisy(20, 6, 2)), TamperKind.COVERED),
    "lens sprayed": ("store_day_person", during(_sprayed), TamperKind.COVERED),
    "defocus by day": ("store_day_person", during(_defocused), TamperKind.DEFOCUS),
    "defocus under IR": ("night_noise", during(_defocused), TamperKind.DEFOCUS),
    "camera turned by 30 %": ("store_day_person", during(_turned), TamperKind.SCENE_CHANGE),
    "camera turned, under IR": ("store_night_ir_person", during(_turned), TamperKind.SCENE_CHANGE),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_raised_after_the_debounce_and_cleared(case: str) -> None:
    name, edit, kind = TAMPERING[case]
    events = run(frames(name, 80, edit))
    assert events == [
        TamperEvent(kind, True, TAMPER_FROM + SETTINGS.raise_after_s),
        TamperEvent(kind, False, TAMPER_UNTIL + SETTINGS.clear_after_s),
    ]


def _darkened(y: np.ndarray) -> np.ndarray:
    """The light off and no IR: 10 % of the brightness, with the sensor's gain noise on top."""
    rng = np.random.default_rng(int(y[0, 0]))
    return np.clip(16 + (y.astype(np.float32) - 16) * 0.1 + rng.normal(0, 3, y.shape), 0, 255).astype(np.uint8)


def test_a_dark_shop_is_neither_covered_nor_defocused() -> None:
    """Nearly every pixel is one dark grey, and the fine detail is mostly noise, yet the shop's
    edges are all still there: not tampering."""
    detector = TamperDetector(SETTINGS)
    events = run(frames("store_day_person", 80, lambda y, t: _darkened(y) if t >= 20 else y), detector)
    assert events == []
    assert detector.reading is not None and detector.reading.uniform_fraction >= SETTINGS.covered_fraction


def test_a_defocused_lens_still_shows_the_same_scene() -> None:
    """Defocus must not read as a scene change: the edge maps still match, with a margin."""
    detector = TamperDetector(SETTINGS)
    for t, y in frames("store_day_person", 50, during(_defocused)):
        detector.process(y, t)
        assert detector.reading is not None
        assert detector.reading.similarity >= SETTINGS.structure_similarity + 0.1


def test_an_interrupted_condition_starts_its_debounce_again() -> None:
    """Covered for 6 s, clear for 3 s, covered for 6 s: never 10 s in a row, so no event."""
    grey = _noisy(118, 3, 6)
    edit: Edit = lambda y, t: grey(y) if 20 <= t < 26 or 29 <= t < 35 else y  # noqa: E731
    assert run(frames("store_day_person", 60, edit)) == []


def test_someone_in_front_of_the_lens_for_a_few_seconds_raises_nothing() -> None:
    edit: Edit = lambda y, t: _noisy(40, 4, 3)(y) if 20 <= t < 20 + SETTINGS.raise_after_s - 2 else y  # noqa: E731
    assert run(frames("store_day_person", 60, edit)) == []


def test_the_debounce_is_in_seconds_not_frames() -> None:
    detector = TamperDetector(TamperSettings(fps=4, raise_after_s=3, clear_after_s=2))
    grey = _noisy(118, 3, 4)
    loop = _loop("store_day_person")
    events = []
    for i in range(4 * 30):
        t = i / 4
        y = loop[i % len(loop)]
        events += detector.process(grey(y) if 10 <= t < 20 else y, t)
    assert events == [TamperEvent(TamperKind.COVERED, True, 13.0), TamperEvent(TamperKind.COVERED, False, 22.0)]


def test_relearning_accepts_a_new_view() -> None:
    detector = TamperDetector(SETTINGS)
    seq = frames("store_day_person", 40, lambda y, t: _turned(y) if t >= 10 else y)
    events = run(seq[:30], detector)
    assert [e.kind for e in events] == [TamperKind.SCENE_CHANGE] and detector.active == {TamperKind.SCENE_CHANGE}
    assert detector.relearn() == {TamperKind.SCENE_CHANGE}
    assert run(seq[30:], detector) == [] and detector.active == frozenset()


def test_a_new_picture_size_clears_what_was_raised_and_starts_again() -> None:
    detector = TamperDetector(SETTINGS)
    seq = frames("store_day_person", 30, lambda y, t: _turned(y) if t >= 5 else y)
    assert [e.started for e in run(seq, detector)] == [True]
    bigger = cv2.resize(seq[-1][1], (640, 360))
    assert detector.process(bigger, 30.0) == [TamperEvent(TamperKind.SCENE_CHANGE, False, 30.0)]
    assert detector.active == frozenset()


def test_readings_tell_what_was_measured() -> None:
    detector = TamperDetector(SETTINGS)
    y = _loop("store_day_person")[0]
    detector.process(y, 0.0)
    assert detector.reading is not None
    assert detector.reading.similarity == pytest.approx(1.0) and detector.reading.sharpness_ratio == pytest.approx(1.0)
    detector.process(_noisy(118, 3, 5)(y), 1.0)
    assert detector.reading.uniform_fraction > SETTINGS.covered_fraction
    assert detector.reading.similarity < SETTINGS.structure_similarity


def test_the_analysed_size_does_not_matter() -> None:
    """A 640×360 stream is shrunk to the analysis width: same decisions as at 320×180."""
    big = [(t, cv2.resize(y, (640, 360), interpolation=cv2.INTER_LINEAR)) for t, y in frames("store_day_person", 80)]
    tampered = [(t, _turned(y) if TAMPER_FROM <= t < TAMPER_UNTIL else y) for t, y in big]
    assert [e.kind for e in run(tampered)] == [TamperKind.SCENE_CHANGE, TamperKind.SCENE_CHANGE]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        TamperDetector().process(np.zeros((180, 320, 3), dtype=np.uint8), 0.0)
    with pytest.raises(ValueError, match="structure_similarity"):
        TamperSettings(structure_similarity=1.5)
    with pytest.raises(ValueError, match="raise_afer_s"):
        TamperSettings.model_validate({"raise_afer_s": 3})
