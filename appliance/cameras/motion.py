"""Motion detection on the luma plane: frames in, motion boxes and a score out. Pure: no I/O,
no clock, no threads; the same frames and times always give the same results.

The recipe (docs/motion.md explains every step and setting): shrink the Y plane to the analysis
width, stretch its contrast between two percentiles, blur, compare with a running-average
background, threshold, dilate, keep blobs above a minimum area inside the zones and outside the
masks, with a core that differs by far more than the threshold (codec blocks and night noise only
just cross it). Guards against what makes shop cameras cry wolf: a change over most of the frame (light
switch, exposure jump), a jump of the colour variance (the camera's colour/IR switch) or a
tripped preclusive patch sends the detector back to calibration for a settle time; the stretch
cancels exposure pumping and daylight fading; a blob that stands still (the ghost of someone the
background learned while calibrating) becomes background after `ghost_after_frames`; a frame
counts as motion only after blobs were seen in every analysed frame for `persistence_s` (sensor
noise, a moth's single frame). While such a run is being confirmed the detector asks for every
frame (`confirm_fps`) rather than one in three, so confirmation takes a quarter of a second of
many frames instead of most of a second of a few.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from appliance.cameras.motion_settings import (
    MotionSettings,
    Polygon,
    check_polygons,
)

if TYPE_CHECKING:
    from cv2.typing import MatLike

Luma = npt.NDArray[np.uint8]

DUE_TOLERANCE = 0.25
"""`wants()` takes a frame up to this fraction of an analysis interval early, so that jittery
wall-clock timestamps do not make it skip a whole input frame."""
HEATMAP_OVERSAMPLE = 8
"""Pixels per cell side when a search polygon is rasterised onto the heatmap grid."""
DILATE_KERNEL = np.ones((3, 3), dtype=np.uint8)
"""Each dilation grows a blob by one pixel in all eight directions."""
SPECK_PIXELS = 2
"""A blob whose changed pixels fit in a square this many pixels wide (before dilation) is a speck:
noise, or a crumb of a fading ghost. Ghost removal judges specks pixel by pixel rather than whole,
which comes to the same for them and saves a contour walk for each of the dozens that strong night
noise makes in a frame."""
HISTOGRAM_STEP = 16
"""The contrast percentiles are read from every 16th pixel in raster order: 3,600 samples at
320×180 place them as well as all pixels do, at a sixteenth of the cost."""
TIME_TOLERANCE_S = 1e-6
"""Frame times are sums of float steps: 10.4 - 10.0 must count as the 0.4 s it stands for."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in frame fractions (x0 < x1, y0 < y1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def intersection(self, other: Box) -> float:
        """Area shared with `other`, in frame fractions."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)


class Reason(StrEnum):
    """Why a result carries no boxes although blobs may be visible."""

    STARTUP = "startup: learning the background"
    RESTART = "stream restarted or resized: learning the background"
    GLOBAL_CHANGE = "global change: recalibrating"
    CHROMA_SWITCH = "colour/IR switch: recalibrating"
    PRECLUSIVE = "preclusive patch changed: recalibrating"


@dataclass(frozen=True)
class MotionResult:
    score: float
    """Fraction of the zone area (the whole frame without zones) covered by kept blobs."""
    boxes: tuple[Box, ...]
    """Kept blobs' bounding boxes, in frame fractions; empty while calibrating."""
    motion: bool
    """Blobs were kept in every analysed frame for at least `persistence_s` (see `since`)."""
    calibrating: bool
    reason: Reason | None
    """Why the detector is calibrating, None when it is not."""
    changed_fraction: float
    """Fraction of the watched frame (without masks) over the threshold: the global-change signal."""
    since: float | None = None
    """Time of the first frame of the unbroken run of frames with kept blobs that this frame ends;
    None when this frame has none. The event layer counts its minimum duration from here, so that
    the detector's persistence and the event's confirmation overlap instead of adding up."""


def chroma_variance(u: Luma, v: Luma, stride: int = 2) -> float:
    """Mean variance of the U and V planes (luma levels²), sampled on every `stride`th pixel.

    Near zero in IR night mode (the picture is grey), tens to hundreds in a colour scene.
    """
    u_std = cv2.meanStdDev(u[::stride, ::stride])[1]
    v_std = cv2.meanStdDev(v[::stride, ::stride])[1]
    return float((u_std[0, 0] ** 2 + v_std[0, 0] ** 2) / 2)


def rasterise(polygons: Sequence[Polygon], width: int, height: int) -> Luma:
    """A 0/255 mask of `width`×`height` pixels that is 255 inside any of `polygons`."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for polygon in polygons:
        points = np.array([(x * width, y * height) for x, y in polygon], dtype=np.float64)
        cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 255)
    return mask


def watched_areas(
    zones: Sequence[Polygon], masks: Sequence[Polygon], width: int, height: int
) -> tuple[Luma, Luma | None]:
    """0/255 masks of what is watched (all but the masks) and of where blobs count (the zones
    minus the masks; None: everywhere). Raises ValueError when either is empty."""
    full = np.full((height, width), 255, dtype=np.uint8)
    watched = cv2.bitwise_not(rasterise(masks, width, height)) if masks else full
    counted = cv2.bitwise_and(rasterise(zones, width, height), watched) if zones else None
    if counted is None and masks:
        counted = watched
    if cv2.countNonZero(watched) == 0 or (counted is not None and cv2.countNonZero(counted) == 0):
        raise ValueError(
            f"the zones and masks leave no pixel to watch in the {width}×{height} analysed picture; "
            "draw larger zones or smaller masks"
        )
    return np.asarray(watched, np.uint8), None if counted is None else np.asarray(counted, np.uint8)


def analysis_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """The size a `width`×`height` frame is analysed at: `max_width` wide at most, same aspect."""
    if width < 1 or height < 1:
        raise ValueError(f"an empty frame ({width}×{height}) cannot be analysed")
    new_width = min(width, max_width)
    return new_width, max(1, round(height * new_width / width))


def shrink(y_plane: Luma, width: int, height: int) -> MatLike:
    """`y_plane` at `width`×`height`: pixel areas are averaged, which also damps sensor noise."""
    if y_plane.shape[1] == width and y_plane.shape[0] == height:
        return y_plane
    return cv2.resize(y_plane, (width, height), interpolation=cv2.INTER_AREA)


class RateGate:
    """Picks frames at `fps` out of a faster stream. The due times stay on a grid of 1/fps steps,
    so the rate holds on average whatever the input rate; after a gap the grid restarts."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.interval = 1 / fps
        self._next: float | None = None
        self._last: float | None = None

    def due(self, t: float) -> bool:
        if self._next is None or self.went_back(t):
            return True
        return t >= self._next - DUE_TOLERANCE * self.interval

    def went_back(self, t: float) -> bool:
        """Whether `t` lies before the last frame taken (a restarted stream or clock)."""
        return self._last is not None and t < self._last

    def take(self, t: float) -> None:
        """Record that the frame at `t` is analysed."""
        if self._next is None or self.went_back(t) or t - self._next >= self.interval:
            self._next = t + self.interval
        else:
            self._next += self.interval
        self._last = t


@dataclass(frozen=True)
class _Geometry:
    """Everything that depends only on the analysis size: rasterised zones, masks and patches."""

    width: int
    height: int
    watched: MatLike
    """255 where changes are looked at: everything but the masks."""
    counted: MatLike | None
    """255 where blobs count (zones minus masks); None when the whole watched frame counts."""
    counted_px: int
    watched_px: int
    sample_watched: npt.NDArray[np.bool_] | None
    """`watched` at the histogram's sample points, None without masks."""
    patches: tuple[tuple[MatLike, int], ...]
    """Each preclusive patch as (0/255 mask, pixel count)."""
    min_area_px: float
    ones: MatLike
    """All 1: the increment of the per-pixel change counter (OpenCV's typed API takes no scalar)."""


class MotionDetector:
    """One camera's motion detector. Stateful (the background), deterministic, not thread-safe."""

    def __init__(
        self,
        settings: MotionSettings | None = None,
        zones: Sequence[Polygon] = (),
        masks: Sequence[Polygon] = (),
        preclusive: Sequence[Polygon] = (),
    ) -> None:
        """`zones`: where blobs count (none: everywhere); `masks`: ignored areas (a TV, a window
        on the street); `preclusive`: patches of static wall that no visitor covers, where any
        change must be the light. All polygons in frame fractions."""
        self.settings = settings or MotionSettings()
        self.zones = check_polygons(zones, "zones")
        self.masks = check_polygons(masks, "masks")
        self.preclusive = check_polygons(preclusive, "preclusive")
        self._input_shape: tuple[int, int] | None = None
        self._geometry: _Geometry | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the background (after a stream restart); the next frame starts a calibration."""
        self._background: npt.NDArray[np.float32] | None = None
        self._moving_age: MatLike | None = None
        self._still_age: MatLike | None = None
        self._previous: MatLike | None = None
        self._stretch: tuple[float, float] | None = None
        self._black: tuple[int, MatLike] | None = None
        self._chroma: float | None = None
        self._gate = RateGate(self.settings.fps)
        self._confirm_gate = RateGate(self.settings.confirm_fps)
        self._reason: Reason | None = Reason.STARTUP
        self._settle_until = -math.inf
        self._run_since: float | None = None
        self._moving = False

    @property
    def confirming(self) -> bool:
        """A run of frames with blobs has begun and is not yet `persistence_s` long."""
        return self._run_since is not None and not self._moving

    def wants(self, t: float, *, confirm: bool = True) -> bool:
        """Whether a frame at `t` (seconds) is due: at `settings.fps`, or at `confirm_fps` while a
        run is being confirmed; skip the frames in between. `confirm=False` asks for the regular
        frames only (a caller short of CPU: confirmation then takes `persistence_s` of them)."""
        return self._gate.due(t) or (confirm and self.confirming and self._confirm_gate.due(t))

    def process(self, y_plane: Luma, uv_variance: float | None, t: float) -> MotionResult:
        """Analyse one frame: `y_plane` the luma (uint8 H×W), `uv_variance` from `chroma_variance`
        (None if unknown: the IR guard is then off), `t` the frame time in seconds."""
        if y_plane.dtype != np.uint8 or y_plane.ndim != 2:
            raise ValueError(f"y_plane must be a 2-D uint8 luma plane, got {y_plane.dtype} {y_plane.shape}")
        geo = self._geometry
        if geo is None or y_plane.shape != self._input_shape or self._gate.went_back(t):
            if self._input_shape is not None:
                self.reset()
                self._reason = Reason.RESTART
            self._input_shape = (y_plane.shape[0], y_plane.shape[1])
            geo = self._geometry = self._build_geometry(y_plane.shape[1], y_plane.shape[0])
        elif self.confirming and not self._gate.due(t):
            return self._confirm(y_plane, uv_variance, t, geo)
        s = self.settings
        self._gate.take(t)

        frame = self._normalise(shrink(y_plane, geo.width, geo.height), geo)
        if s.blur_kernel > 1:
            frame = cv2.GaussianBlur(frame, (s.blur_kernel, s.blur_kernel), 0)
        if self._background is None or self._moving_age is None:
            self._background = np.asarray(frame, dtype=np.float32)
            self._moving_age = np.zeros_like(frame)
            self._still_age = np.zeros_like(frame)
            self._previous = frame
            self._settle_until = t + s.settle_s
            self._chroma = uv_variance
            return MotionResult(0.0, (), False, True, self._reason, 0.0)

        diff, changed, changed_fraction = self._changes(frame, geo)
        trigger = self._global_trigger(changed, changed_fraction, uv_variance, geo)
        if trigger is not None:
            # Start again from this picture: blending the old scene out at the calibration rate
            # would leave a residue that the slow calibrated rate then takes seconds to clear.
            self._reason = trigger
            self._settle_until = t + s.settle_s
            self._background[:] = frame

        grown, boxes, area = self._kept(changed, diff, geo)

        if (
            self._reason is not None
            and trigger is None
            and t >= self._settle_until
            and changed_fraction < s.calibrated_fraction
            and len(boxes) <= s.calibrated_max_boxes
        ):
            self._reason = None
        calibrating = self._reason is not None
        self._learn(frame, changed, grown, changed_fraction, calibrating, geo)
        self._previous = frame

        if calibrating:
            return self._verdict(t, (), 0.0, changed_fraction)
        return self._verdict(t, boxes, area / geo.counted_px, changed_fraction)

    def _confirm(self, y_plane: Luma, uv_variance: float | None, t: float, geo: _Geometry) -> MotionResult:
        """A frame between the regular ones while a run is being confirmed: compared with the
        background like any frame, but nothing is learned from it, so the background, the stretch
        and the per-pixel counters evolve at `fps` whatever the confirmations."""
        s = self.settings
        frame = self._normalise(shrink(y_plane, geo.width, geo.height), geo, learn=False)
        if s.blur_kernel > 1:
            frame = cv2.GaussianBlur(frame, (s.blur_kernel, s.blur_kernel), 0)
        diff, changed, changed_fraction = self._changes(frame, geo)
        if self._global_trigger(changed, changed_fraction, uv_variance, geo, learn=False) is not None:
            # No evidence either way: the next regular frame recalibrates, and the run is over.
            return self._verdict(t, (), 0.0, changed_fraction)
        _, boxes, area = self._kept(changed, diff, geo)
        return self._verdict(t, boxes, area / geo.counted_px, changed_fraction)

    def _verdict(self, t: float, boxes: tuple[Box, ...], score: float, changed_fraction: float) -> MotionResult:
        """The result of a frame with these kept blobs: motion once the run they continue is long enough."""
        s = self.settings
        if not (boxes and score > s.min_score):
            self._run_since = None
        elif self._run_since is None:
            self._run_since = t
        self._moving = self._run_since is not None and t - self._run_since >= s.persistence_s - TIME_TOLERANCE_S
        self._confirm_gate.take(t)
        return MotionResult(
            score=score,
            boxes=boxes,
            motion=self._moving,
            calibrating=self._reason is not None,
            reason=self._reason,
            changed_fraction=changed_fraction,
            since=self._run_since,
        )

    def _changes(self, frame: MatLike, geo: _Geometry) -> tuple[MatLike, MatLike, float]:
        """The difference from the background, the pixels over the threshold (0/255, masks cleared),
        and their fraction of the watched frame."""
        assert self._background is not None
        s = self.settings
        diff = cv2.absdiff(frame, cv2.convertScaleAbs(self._background))
        changed = cv2.threshold(diff, s.threshold - 1, 255, cv2.THRESH_BINARY)[1]
        if self.masks:
            changed = cv2.bitwise_and(changed, geo.watched)
        return diff, changed, cv2.countNonZero(changed) / geo.watched_px

    def _kept(self, changed: MatLike, diff: MatLike, geo: _Geometry) -> tuple[MatLike, tuple[Box, ...], float]:
        """The dilated changes, and the boxes and total area of the blobs that count."""
        s = self.settings
        grown = cv2.dilate(changed, DILATE_KERNEL, iterations=s.dilate_iterations) if s.dilate_iterations else changed
        blobs = cv2.bitwise_and(grown, geo.counted) if geo.counted is not None else grown
        boxes, area = self._blobs(blobs, diff, geo)
        return grown, boxes, area

    def _build_geometry(self, in_width: int, in_height: int) -> _Geometry:
        s = self.settings
        width, height = analysis_size(in_width, in_height, s.width)
        watched, counted = watched_areas(self.zones, self.masks, width, height)
        counted_px = width * height if counted is None else cv2.countNonZero(counted)
        watched_px = cv2.countNonZero(watched)
        sample = np.asarray(watched).reshape(-1)[::HISTOGRAM_STEP] > 0 if self.masks else None
        patches = []
        for polygon in self.preclusive:
            patch = cv2.bitwise_and(rasterise([polygon], width, height), watched)
            patches.append((patch, max(cv2.countNonZero(patch), 1)))
        return _Geometry(
            width=width,
            height=height,
            watched=watched,
            counted=counted,
            counted_px=counted_px,
            watched_px=watched_px,
            sample_watched=sample,
            patches=tuple(patches),
            min_area_px=s.min_area * width * height,
            ones=np.ones((height, width), dtype=np.uint8),
        )

    def _normalise(self, small: MatLike, geo: _Geometry, *, learn: bool = True) -> MatLike:
        """Stretch the luma between two percentiles, averaged over recent frames.

        Compensates exposure pumping, daylight fading and a dimmed picture: a figure is as
        different from the background at dusk as at noon. Without `learn` the frame is stretched
        by the current limits and does not move them.
        """
        s = self.settings
        if not s.contrast_stretch:
            return small
        if not learn and self._stretch is not None:
            return self._stretched(small, geo)
        sample = np.asarray(small).reshape(-1)[::HISTOGRAM_STEP]
        values = sample[geo.sample_watched] if geo.sample_watched is not None else sample
        cumulative = np.cumsum(np.bincount(values, minlength=256))
        ranks = (cumulative[-1] * s.contrast_low_percentile / 100, cumulative[-1] * s.contrast_high_percentile / 100)
        low, high = (float(level) for level in np.searchsorted(cumulative, ranks))
        if self._stretch is None or self._reason is not None:
            # While (re)calibrating the picture may just have changed completely: follow it at once.
            self._stretch = (low, high)
        else:
            a = s.contrast_alpha
            old_low, old_high = self._stretch
            self._stretch = (old_low + a * (low - old_low), old_high + a * (high - old_high))
        return self._stretched(small, geo)

    def _stretched(self, small: MatLike, geo: _Geometry) -> MatLike:
        s = self.settings
        assert self._stretch is not None
        lo, hi = self._stretch
        spread = max(hi - lo, float(s.contrast_min_range))
        black = (lo + hi - spread) / 2
        gain = 255.0 / spread
        # out = (x - black) * gain in two cheap passes (a lookup table costs more here): a
        # saturating subtract of the whole part, then scale and shift by the fraction. Pixels at
        # or below the whole part come out as a constant below `gain` instead of 0.
        whole = max(int(black), 0)
        if whole == 0:
            return cv2.convertScaleAbs(small, alpha=gain, beta=-black * gain)
        if self._black is None or self._black[0] != whole:
            self._black = (whole, np.full((geo.height, geo.width), whole, dtype=np.uint8))
        return cv2.convertScaleAbs(cv2.subtract(small, self._black[1]), alpha=gain, beta=(whole - black) * gain)

    def _global_trigger(
        self,
        changed: MatLike,
        changed_fraction: float,
        uv_variance: float | None,
        geo: _Geometry,
        *,
        learn: bool = True,
    ) -> Reason | None:
        """Why this frame is a global change (the light, the IR switch), or None. Without `learn`
        the recent colour variance is left as it is."""
        s = self.settings
        if uv_variance is not None and self._chroma is not None:
            ratio = (uv_variance + s.chroma_floor) / (self._chroma + s.chroma_floor)
            if not 1 / s.chroma_jump_ratio < ratio < s.chroma_jump_ratio:
                if learn:
                    self._chroma = uv_variance
                return Reason.CHROMA_SWITCH
        if uv_variance is not None and learn:
            self._chroma = (
                uv_variance if self._chroma is None else self._chroma + s.chroma_alpha * (uv_variance - self._chroma)
            )
        if changed_fraction > s.global_change_fraction:
            return Reason.GLOBAL_CHANGE
        for patch, px in geo.patches:
            if cv2.countNonZero(cv2.bitwise_and(changed, patch)) > s.preclusive_fraction * px:
                return Reason.PRECLUSIVE
        return None

    def _blobs(self, blobs: MatLike, diff: MatLike, geo: _Geometry) -> tuple[tuple[Box, ...], float]:
        """Bounding boxes (frame fractions) and total area (pixels) of the blobs big enough to count
        and with a core: at least `core_min_pixels` pixels that differ by `core_ratio` × `threshold`."""
        s = self.settings
        contours, _ = cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        area = 0.0
        core: MatLike | None = None
        for contour in contours:
            a = cv2.contourArea(contour)
            if a < geo.min_area_px:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            if s.core_min_pixels:
                if core is None:
                    core = cv2.threshold(diff, s.core_ratio * s.threshold - 1, 255, cv2.THRESH_BINARY)[1]
                inside = cv2.bitwise_and(core[y : y + h, x : x + w], blobs[y : y + h, x : x + w])
                if cv2.countNonZero(inside) < s.core_min_pixels:
                    continue
            boxes.append(Box(x / geo.width, y / geo.height, (x + w) / geo.width, (y + h) / geo.height))
            area += a
        return tuple(boxes), area

    def _learn(
        self,
        frame: MatLike,
        changed: MatLike,
        grown: MatLike,
        changed_fraction: float,
        calibrating: bool,
        geo: _Geometry,
    ) -> None:
        """Blend the frame into the background: fast while calibrating; otherwise slowly, and
        a changing pixel only once it changed for `absorb_after_frames` frames in a row; a ghost
        (a blob that has not moved for `ghost_after_frames`) is replaced by the picture at once."""
        assert self._background is not None and self._moving_age is not None and self._still_age is not None
        s = self.settings
        if calibrating:
            self._moving_age = np.zeros_like(self._moving_age)
            self._still_age = np.zeros_like(self._still_age)
            cv2.accumulateWeighted(frame, self._background, s.background_alpha_calibrating)
            return
        # age: frames in a row a pixel has changed (0 when it has not), saturating at 255.
        self._moving_age = cv2.bitwise_and(cv2.add(self._moving_age, geo.ones), changed)
        fresh = cv2.inRange(self._moving_age, 1, s.absorb_after_frames - 1)
        cv2.accumulateWeighted(frame, self._background, s.background_alpha, mask=cv2.bitwise_not(fresh))
        if s.ghost_after_frames:
            self._forget_ghosts(frame, grown, changed_fraction, geo)

    def _forget_ghosts(self, frame: MatLike, grown: MatLike, changed_fraction: float, geo: _Geometry) -> None:
        """Replace by the picture what stood still for `ghost_after_frames` analysed frames.

        A figure, even browsing, moves its edges and limbs from frame to frame; the ghost it
        leaves where it stood while the background was learned (at start-up, after a light
        switch) does not, nor does an object put down (the "ghost" of Cucchiara et al.,
        "Detecting moving objects, ghosts and shadows in video streams", 2003). A blob is judged
        whole, so that the even inside of a slow figure is not taken for still; specks, of which
        night noise makes dozens a frame, pixel by pixel, which comes to the same for them.
        """
        assert self._previous is not None and self._still_age is not None and self._background is not None
        s = self.settings
        if changed_fraction == 0:
            if cv2.countNonZero(self._still_age):
                self._still_age = np.zeros_like(self._still_age)
            return
        moved = cv2.threshold(cv2.absdiff(frame, self._previous), s.threshold - 1, 255, cv2.THRESH_BINARY)[1]
        # Still: the pixels of specks that did not change since the previous frame...
        still = cv2.bitwise_and(grown, cv2.bitwise_not(moved))
        speck = SPECK_PIXELS + 2 * s.dilate_iterations
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w <= speck and h <= speck:
                continue
            outline = np.zeros((h, w), dtype=np.uint8)
            cv2.drawContours(outline, [contour], -1, 255, cv2.FILLED, offset=(-x, -y))
            blob = cv2.bitwise_and(outline, grown[y : y + h, x : x + w])
            changing = cv2.countNonZero(cv2.bitwise_and(moved[y : y + h, x : x + w], blob))
            # ...and all of a blob of which at most a sliver changed, or none of it.
            whole = 255 if changing <= s.ghost_motion_fraction * cv2.countNonZero(blob) else 0
            region = still[y : y + h, x : x + w]
            region[blob > 0] = whole
        # Frames in a row a pixel has been still (0 otherwise), saturating at 255.
        self._still_age = cv2.bitwise_and(cv2.add(self._still_age, geo.ones), still)
        ghost = cv2.inRange(self._still_age, s.ghost_after_frames, 255)
        if cv2.countNonZero(ghost):
            # What is there now has been there all along: it is the background. (The next frame
            # finds no change there, which resets the pixels' ages.)
            cv2.accumulateWeighted(frame, self._background, 1.0, mask=ghost)


class MotionHeatmap:
    """Where motion was during a segment, on a coarse grid, for "motion inside this region" searches.

    Each cell counts the analysed frames with motion whose boxes touch it (saturating at 255).
    """

    FORMAT = 1
    """First byte of `to_bytes()`; bump it when the layout changes."""

    def __init__(self, rows: int = 16, cols: int = 16) -> None:
        if not (1 <= rows <= 255 and 1 <= cols <= 255):
            raise ValueError(f"a heatmap needs 1..255 rows and columns, got {rows}×{cols}")
        self.rows = rows
        self.cols = cols
        self._counts = np.zeros((rows, cols), dtype=np.uint16)

    def add(self, result: MotionResult) -> None:
        """Count the cells under `result`'s boxes, if the frame had (persistent) motion."""
        if not result.motion:
            return
        touched = np.zeros((self.rows, self.cols), dtype=bool)
        for box in result.boxes:
            touched[self._span(box.y0, box.y1, self.rows), self._span(box.x0, box.x1, self.cols)] = True
        self._counts[touched] = np.minimum(self._counts[touched] + 1, 255)

    @staticmethod
    def _span(start: float, end: float, cells: int) -> slice:
        first = min(int(start * cells), cells - 1)
        last = max(int(np.ceil(end * cells)), first + 1)
        return slice(first, min(last, cells))

    @property
    def counts(self) -> npt.NDArray[np.uint8]:
        """Frames with motion per cell, rows from the top."""
        return self._counts.astype(np.uint8)

    def to_bytes(self) -> bytes:
        """Compact form for the database: format, rows, cols, then the zlib-packed counts
        (a quiet segment takes about 15 bytes, a busy one at most 256 + 13)."""
        return bytes((self.FORMAT, self.rows, self.cols)) + zlib.compress(self.counts.tobytes(), 9)

    @classmethod
    def from_bytes(cls, data: bytes) -> MotionHeatmap:
        if len(data) < 3 or data[0] != cls.FORMAT:
            raise ValueError("not a motion heatmap of this format; the segment's heatmap must be rebuilt")
        heatmap = cls(data[1], data[2])
        try:
            counts = np.frombuffer(zlib.decompress(data[3:]), dtype=np.uint8)
        except zlib.error as exc:
            raise ValueError(f"corrupt motion heatmap ({exc}); the segment's heatmap must be rebuilt") from None
        if counts.size != heatmap.rows * heatmap.cols:
            raise ValueError(f"motion heatmap holds {counts.size} cells, expected {heatmap.rows * heatmap.cols}")
        heatmap._counts = counts.reshape(heatmap.rows, heatmap.cols).astype(np.uint16)
        return heatmap

    def intersects(self, polygon: Polygon, min_count: int = 1) -> bool:
        """Whether any cell the polygon (frame fractions) covers saw motion in ≥ `min_count` frames."""
        (points,) = check_polygons([polygon], "region")
        # Rasterise finely and pool to cells, so a polygon smaller than a cell still finds its cell.
        fine = rasterise([points], self.cols * HEATMAP_OVERSAMPLE, self.rows * HEATMAP_OVERSAMPLE)
        covered = fine.reshape(self.rows, HEATMAP_OVERSAMPLE, self.cols, HEATMAP_OVERSAMPLE).max(axis=(1, 3)) > 0
        return bool((self._counts[covered] >= min_count).any())
