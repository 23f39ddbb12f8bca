"""Motion detection settings: the part of the detector that the configuration file holds.

Kept apart from the detector so that reading and checking the configuration does not load
OpenCV and NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Polygon = Sequence[tuple[float, float]]
"""A polygon as (x, y) vertices in frame fractions: x from the left, y from the top, 0..1."""

Sensitivity = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class SensitivityPreset:
    threshold: int
    min_area: float


SENSITIVITY_PRESETS: dict[str, SensitivityPreset] = {
    "low": SensitivityPreset(threshold=40, min_area=0.003),
    "medium": SensitivityPreset(threshold=30, min_area=0.0015),
    "high": SensitivityPreset(threshold=20, min_area=0.0006),
}
"""What `sensitivity` sets unless `threshold` / `min_area` are given explicitly."""


class MotionSettings(BaseModel):
    """Tunables of the motion detector. Every threshold lives here, with its unit and bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = Field(
        5.0,
        gt=0,
        le=15,
        description="Analysed frames per second; the caller feeds frames when `MotionDetector.wants(t)`. "
        "Absorption and ghost counts below are in these analysed frames.",
    )
    width: int = Field(
        320,
        ge=64,
        le=1280,
        description="Analysis width in pixels; the height follows the frame's aspect ratio. "
        "Frames narrower than this are used as they are (never enlarged).",
    )
    sensitivity: Sensitivity = Field(
        "medium", description="Preset for `threshold` and `min_area` (see SENSITIVITY_PRESETS)."
    )
    threshold: int = Field(
        30,
        ge=4,
        le=128,
        description="Luma difference, in 0..255 steps of the contrast-stretched picture, for a pixel to "
        "count as changed. Set by `sensitivity` unless given.",
    )
    min_area: float = Field(
        0.0015,
        ge=0,
        le=0.5,
        description="Smallest moving blob that counts, as a fraction of the frame area (0.0015 is "
        "86 px at 320×180). Set by `sensitivity` unless given.",
    )
    min_score: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="A frame moves only when more than this fraction of the zone area is covered by "
        "kept blobs (0: any kept blob).",
    )
    blur_kernel: int = Field(
        3, ge=1, le=15, description="Side of the Gaussian blur kernel in pixels, odd (1: no blur)."
    )
    dilate_iterations: int = Field(
        1, ge=0, le=5, description="3×3 dilations joining the pieces of one moving body into one blob."
    )
    contrast_stretch: bool = Field(
        True,
        description="Stretch each frame's contrast between the percentiles below before comparing. Off "
        "saves ~15 µs a frame, but exposure pumping and fading daylight then show up as motion.",
    )
    contrast_low_percentile: float = Field(
        4.0, ge=0, lt=50, description="Luma percentile mapped to black by the contrast stretch (%)."
    )
    contrast_high_percentile: float = Field(
        96.0, gt=50, le=100, description="Luma percentile mapped to white by the contrast stretch (%)."
    )
    contrast_min_range: int = Field(
        64,
        ge=1,
        le=255,
        description="The stretch never spreads fewer luma levels than this over 0..255, so that a dark, "
        "flat picture is not amplified into noise.",
    )
    contrast_alpha: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Weight of the newest frame in the averaged stretch limits (1: each frame alone). "
        "High enough to follow exposure pumping, low enough that a figure does not jerk the stretch.",
    )
    background_alpha_calibrating: float = Field(
        0.2, gt=0, le=1, description="Weight of a new frame in the background while calibrating (fast learning)."
    )
    background_alpha: float = Field(
        0.01, gt=0, le=1, description="Weight of a new frame in the background once calibrated (slow drift)."
    )
    absorb_after_frames: int = Field(
        10,
        ge=1,
        le=1000,
        description="A pixel that keeps changing is blended into the background only after this many "
        "analysed frames, so that passers-by leave no ghost while parked objects fade in.",
    )
    ghost_after_frames: int = Field(
        10,
        ge=0,
        le=1000,
        description="A blob in which almost nothing moved from frame to frame (see `ghost_motion_fraction`) "
        "for this many analysed frames in a row is a ghost (what the background learned while someone "
        "stood there, e.g. during calibration) or something that stopped: it becomes background at once. "
        "0 turns ghost removal off.",
    )
    ghost_motion_fraction: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="A blob counts as still in a frame when at most this fraction of its pixels changed "
        "by `threshold` since the previous analysed frame.",
    )
    core_ratio: float = Field(
        2.0,
        ge=1,
        le=8,
        description="A blob counts only with a core: pixels that differ by this multiple of `threshold` "
        "(hysteresis, as in Canny's edge detector). Codec blocks and noise under IR only just cross "
        "`threshold`; a person crosses it by far.",
    )
    core_min_pixels: int = Field(
        8,
        ge=0,
        le=10000,
        description="Pixels (at the analysis size) of a blob's core, see `core_ratio`; 0 turns the check off.",
    )
    persistence_s: float = Field(
        0.25,
        ge=0,
        le=10,
        description="Blobs must be kept in every analysed frame of a run at least this long (first to last "
        "frame of the run) before `motion` turns true (noise, insects). 0: the first frame with blobs moves.",
    )
    confirm_fps: float = Field(
        15.0,
        gt=0,
        le=60,
        description="Analysed frames per second while a run of frames with blobs is being confirmed (from "
        "its first frame until `persistence_s` has passed): the frames between the regular ones are "
        "checked too, against the background and without learning from them, so a run is confirmed "
        "by many frames in a short time. Never below `fps`.",
    )
    global_change_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="If more than this fraction of the watched frame changes at once, it is a light "
        "switch or exposure jump, not a visitor: recalibrate.",
    )
    calibrated_fraction: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Calibration may end once less than this fraction of the watched frame changes.",
    )
    calibrated_max_boxes: int = Field(
        4, ge=0, le=100, description="Calibration may end once at most this many blobs are left."
    )
    settle_s: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Calibration lasts at least this long after the start or a global change (s): a "
        "camera's exposure and IR filter take a moment to settle after a switch.",
    )
    chroma_jump_ratio: float = Field(
        4.0,
        gt=1,
        le=1000,
        description="A change of the U/V variance by this factor (either way) against its recent average "
        "is the colour/IR switch: recalibrate.",
    )
    chroma_floor: float = Field(
        2.0,
        gt=0,
        le=1000,
        description="Added to both variances before the ratio (luma levels²), so that noise in a grey "
        "IR picture does not look like a jump.",
    )
    chroma_alpha: float = Field(
        0.1, gt=0, le=1, description="Weight of the newest frame in the recent average of the U/V variance."
    )
    preclusive_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A preclusive patch (a static wall nobody walks past) trips when more than this "
        "fraction of it changes; a tripped patch means a global change.",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_sensitivity(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = SENSITIVITY_PRESETS.get(data.get("sensitivity", "medium"))
            if preset is not None:  # an unknown name is reported by the field's own validation
                data = {"threshold": preset.threshold, "min_area": preset.min_area, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> MotionSettings:
        if self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd, got {self.blur_kernel}")
        if self.background_alpha > self.background_alpha_calibrating:
            raise ValueError("background_alpha must not exceed background_alpha_calibrating")
        if self.confirm_fps < self.fps:
            raise ValueError(f"confirm_fps ({self.confirm_fps}) must not be below fps ({self.fps})")
        return self


def check_polygons(polygons: Sequence[Polygon], what: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The polygons as tuples, or ValueError naming the bad one."""
    checked = []
    for i, polygon in enumerate(polygons):
        points = tuple((float(x), float(y)) for x, y in polygon)
        if len(points) < 3:
            raise ValueError(f"{what}[{i}] has {len(points)} points; a polygon needs at least 3")
        if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in points):
            raise ValueError(f"{what}[{i}] has a point outside 0..1; give coordinates as fractions of the frame")
        checked.append(points)
    return tuple(checked)
