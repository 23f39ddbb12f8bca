"""Camera tampering on the luma plane: lens covered or sprayed, defocus, camera turned. Pure: no
I/O, no clock, no threads; fed the small analysis frames at a low rate (default 1 fps).

Each check compares the picture with references learned while the camera looked normal, using
measures that do not care how bright the picture is, so that a light switch or the IR night mode
is not tampering (docs/motion.md, "Tampering"):

- covered: most pixels share one grey level (a hand, tape, paint, spray fog) *and* the scene's
  structure is gone; a dark but intact shop keeps its structure and is not "covered";
- defocus: the share of fine detail in the picture (variance of the Laplacian over the variance
  of the picture) fell to a fraction of the learned reference;
- scene change: the map of where the edges are no longer matches the reference (normalised
  correlation of blurred gradient magnitudes), i.e. the camera looks somewhere else.

A condition must hold for `raise_after_s` before its event starts and be gone for `clear_after_s`
before it clears, so a person standing in front of the lens for a moment raises nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from appliance.cameras.motion import Luma, RateGate, analysis_size, shrink

if TYPE_CHECKING:
    from cv2.typing import MatLike

Floats = npt.NDArray[np.float32]


class TamperSettings(BaseModel):
    """Tunables of the tamper checks, each with its unit and bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = Field(1.0, gt=0, le=5, description="Analysed frames per second (`TamperDetector.wants`).")
    width: int = Field(320, ge=64, le=1280, description="Analysis width in pixels (never enlarged).")
    covered_band: int = Field(
        10, ge=1, le=64, description="Luma levels either side of the commonest level that count as 'one colour'."
    )
    covered_fraction: float = Field(
        0.75, gt=0, le=1, description="Covered when at least this fraction of the pixels is one colour..."
    )
    structure_similarity: float = Field(
        0.7,
        gt=-1,
        lt=1,
        description="...and for every check: the scene's edge map correlates with the reference below "
        "this (1 identical, 0 unrelated). Below it and not covered: scene change.",
    )
    structure_width: int = Field(
        64, ge=8, le=320, description="Width of the edge map compared with the reference, in cells."
    )
    structure_blur: float = Field(
        2.0,
        gt=0,
        le=10,
        description="Gaussian sigma (analysis pixels) applied before the edge map, so that noise and "
        "a slightly soft focus do not change it.",
    )
    defocus_ratio: float = Field(
        0.35, gt=0, lt=1, description="Defocused when the fine-detail share falls below this fraction of its reference."
    )
    sharpness_blur_kernel: int = Field(
        3, ge=1, le=9, description="Gaussian kernel (odd, pixels) smoothing sensor noise before the Laplacian."
    )
    reference_alpha: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Weight of a normal-looking frame in the references (0.05 at 1 fps: about 20 s memory).",
    )
    raise_after_s: float = Field(
        10.0, ge=0, le=3600, description="A condition must hold this long before its event starts (s)."
    )
    clear_after_s: float = Field(
        5.0, ge=0, le=3600, description="A raised condition must be gone this long before it clears (s)."
    )


class TamperKind(StrEnum):
    COVERED = "covered"
    DEFOCUS = "defocus"
    SCENE_CHANGE = "scene_change"


@dataclass(frozen=True)
class TamperEvent:
    kind: TamperKind
    started: bool
    """True: the condition has held for `raise_after_s`; False: it has been gone for `clear_after_s`."""
    t: float
    """Time of the frame that decided it (seconds, the caller's clock)."""


@dataclass(frozen=True)
class TamperReading:
    """What the checks measured on the last frame (for the console and for tuning)."""

    uniform_fraction: float
    similarity: float
    sharpness_ratio: float


@dataclass
class _Debounce:
    active: bool = False
    since: float | None = None
    """When the frames started to disagree with `active`."""

    def update(self, holds: bool, t: float, raise_after: float, clear_after: float) -> bool | None:
        """The new state when it flips at `t`, else None."""
        if holds == self.active:
            self.since = None
            return None
        if self.since is None or t < self.since:
            self.since = t
        if t - self.since >= (raise_after if holds else clear_after):
            self.active, self.since = holds, None
            return holds
        return None


def uniform_fraction(frame: MatLike, band: int) -> float:
    """The largest fraction of pixels whose levels lie within ±`band` of one level."""
    pixels = np.asarray(frame).ravel()
    cumulative = np.concatenate(([0], np.cumsum(np.bincount(pixels, minlength=256))))
    window = 2 * band + 1
    return float((cumulative[window:] - cumulative[:-window]).max() / pixels.size)


def sharpness(frame: MatLike, blur_kernel: int) -> float:
    """Fine detail's share of the picture: var(Laplacian) / var(picture), after damping noise.

    Dividing by the picture's own variance makes it indifferent to brightness and contrast.
    """
    if blur_kernel > 1:
        frame = cv2.GaussianBlur(frame, (blur_kernel, blur_kernel), 0)
    laplacian = cv2.Laplacian(frame, cv2.CV_32F)
    spread = float(cv2.meanStdDev(frame)[1][0, 0]) ** 2
    return float(cv2.meanStdDev(laplacian)[1][0, 0]) ** 2 / max(spread, MIN_VARIANCE)


def edge_map(frame: MatLike, sigma: float, width: int) -> Floats:
    """Blurred gradient magnitude pooled to `width` cells across, zero-mean and unit-norm, so that
    the dot product of two maps is their normalised correlation."""
    smooth = cv2.GaussianBlur(np.asarray(frame, dtype=np.float32), (0, 0), sigma)
    magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    height, full_width = smooth.shape
    cells = cv2.resize(magnitude, analysis_size(full_width, height, width), interpolation=cv2.INTER_AREA)
    return _unit(cells)


def _unit(cells: MatLike) -> Floats:
    """`cells` minus its mean, scaled to norm 1 (left at zero when flat)."""
    centred = np.asarray(cells, dtype=np.float32) - np.float32(np.mean(cells))
    norm = float(np.linalg.norm(centred))
    return centred / np.float32(norm) if norm > MIN_VARIANCE else centred


MIN_VARIANCE = 1e-6
"""Below this a picture (or an edge map) is treated as perfectly flat."""


class TamperDetector:
    """One camera's tamper checks. Stateful (references, debounce timers), deterministic."""

    def __init__(self, settings: TamperSettings | None = None) -> None:
        """The first frame is taken as normal: a camera that starts covered or turned reports
        the opposite when it is fixed (then call `relearn()`)."""
        self.settings = settings or TamperSettings()
        self._states: dict[TamperKind, _Debounce] = {}
        self.relearn()

    def relearn(self) -> frozenset[TamperKind]:
        """Forget the references (the camera was re-aimed on purpose); the next frame is the new
        normal. Returns the conditions that were raised and are now dropped without a cleared
        event, so that the caller can close their alerts."""
        dropped = self.active
        self._edges: Floats | None = None
        self._sharpness: float | None = None
        self._shape: tuple[int, int] | None = None
        self._gate = RateGate(self.settings.fps)
        self._states = {kind: _Debounce() for kind in TamperKind}
        self.reading: TamperReading | None = None
        return dropped

    @property
    def active(self) -> frozenset[TamperKind]:
        """The conditions raised and not yet cleared."""
        return frozenset(kind for kind, state in self._states.items() if state.active)

    def wants(self, t: float) -> bool:
        """Whether a frame at `t` (seconds) is due at `settings.fps`."""
        return self._gate.due(t)

    def process(self, y_plane: Luma, t: float) -> list[TamperEvent]:
        """Check one frame (uint8 H×W luma) taken at `t` seconds; the events it starts or clears."""
        if y_plane.dtype != np.uint8 or y_plane.ndim != 2:
            raise ValueError(f"y_plane must be a 2-D uint8 luma plane, got {y_plane.dtype} {y_plane.shape}")
        s = self.settings
        events = []
        if y_plane.shape != self._shape:
            # A new picture size (the camera was reconfigured): start again, and say so for
            # what was raised against the old picture.
            events += [TamperEvent(kind, False, t) for kind in sorted(self.relearn())]
            self._shape = (y_plane.shape[0], y_plane.shape[1])
        self._gate.take(t)
        frame = shrink(y_plane, *analysis_size(y_plane.shape[1], y_plane.shape[0], s.width))
        edges = edge_map(frame, s.structure_blur, s.structure_width)
        sharp = sharpness(frame, s.sharpness_blur_kernel)
        if self._edges is None or self._sharpness is None:
            self._edges, self._sharpness = edges, sharp
        uniform = uniform_fraction(frame, s.covered_band)
        similarity = float((edges * self._edges).sum())
        ratio = sharp / max(self._sharpness, MIN_VARIANCE)
        self.reading = TamperReading(uniform, similarity, ratio)

        covered = uniform >= s.covered_fraction and similarity < s.structure_similarity
        holds = {TamperKind.COVERED: covered}
        if not covered:
            # A covered lens also has no detail and no familiar edges: report the cause only.
            holds[TamperKind.SCENE_CHANGE] = similarity < s.structure_similarity
            holds[TamperKind.DEFOCUS] = ratio < s.defocus_ratio
        for kind, condition in holds.items():
            flipped = self._states[kind].update(condition, t, s.raise_after_s, s.clear_after_s)
            if flipped is not None:
                events.append(TamperEvent(kind, flipped, t))
        if not any(holds.values()) and not self.active:
            self._learn(edges, sharp)
        return events

    def _learn(self, edges: Floats, sharp: float) -> None:
        assert self._edges is not None and self._sharpness is not None
        a = self.settings.reference_alpha
        self._edges = _unit(cv2.addWeighted(self._edges, 1 - a, edges, a, 0))
        self._sharpness += a * (sharp - self._sharpness)
