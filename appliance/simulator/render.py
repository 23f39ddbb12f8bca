"""Draws a scene's frames as YUV 4:2:0 planes (what an H.264 encoder eats), with numpy only.

The shop is drawn once per resolution in RGB (wall, tiled floor, shelves full of goods, ceiling
lamps) and converted for each look: daylight, light off (the same picture, much darker) and IR
night mode (grey: U = V = 128, flatter and brighter, darker corners from the illuminator's
cone). Figures are small sprites cached per pose and pasted. Tampering changes what reaches the
sensor: a turned camera sees another part of the shop, a defocused lens blurs the picture, a
hand over the lens hides it. Sensor noise is added last, per frame, stronger in the dark.
Frames depend only on (scene, size, frame time), so encoding the same scene twice gives the
same stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

import numpy as np
import numpy.typing as npt

from appliance.simulator.scene import Figure, Scene, SwitchKind

Plane = npt.NDArray[np.float32]
Planes = tuple[Plane, Plane, Plane]
Bytes2D = npt.NDArray[np.uint8]

DARK_FACTOR = 0.22
"""Light off in colour mode: what is left of the brightness (street light through the window)."""
IR_LIFT = 0.2
"""IR mode: the floor of the grey level; IR pictures look washed out."""
IR_GAMMA = 0.7
"""IR mode: < 1 flattens contrast and brightens mid-tones."""
IR_CONE = 0.5
"""IR mode: how much darker the corners are than the centre (the illuminator's cone)."""
IR_WEIGHTS = (0.45, 0.35, 0.20)
"""IR mode: how red, green and blue materials reflect near-infrared (red cloth and plants glow)."""
CHROMA_NOISE_SHARE = 0.5
"""Colour noise relative to luma noise (sensors are noisier in luma, and chroma is half size)."""
NOISE_FIELDS = 8
NOISE_MARGIN = 32
"""Noise is drawn once per renderer as NOISE_FIELDS pictures NOISE_MARGIN pixels larger than
the frame; each frame adds a window of one at a random offset. Frame to frame that is as random
as fresh noise (8 x 33 x 33 choices, shifted), at a sixth of the cost of drawing it anew."""
STRIDE = 0.16
"""One walking step, as a fraction of the frame height."""
POSES = 8
"""Walking poses per stride; sprites are cached per pose."""
COVER_RGB = (0.10, 0.07, 0.06)
"""A hand over the lens: dark (light only comes through the skin and past the edges), a little red."""
COVER_SHADE = 0.3
"""The hand is this much brighter at the top of the frame than at the bottom (light leaks past it)."""
COVER_SWEEP_S = 0.5
"""A hand takes this long to slide over the lens from the left edge, and to slide off it again."""
DEFOCUS_BLUR = 0.01
"""Out of focus: a Gaussian-like blur with a sigma of this fraction of the frame width (13 px at 1280)."""
DEFOCUS_PASSES = 3
"""Box blurs in a row that make the defocus blur (three are close to a Gaussian)."""
TURNED_VIEW = (0.45, 0.25, 2.0)
"""The camera knocked askew: it sees the shop from (x, y) (frame fractions) at twice the scale, the
right-hand shelves and a strip of floor filling the frame; no edge lies where it used to."""


class Look(Enum):
    DAY = "day"
    DARK = "dark"
    IR = "ir"


def look_at(scene: Scene, t: float) -> Look:
    if scene.ir_on(t):
        return Look.IR
    return Look.DAY if scene.light_on(t) else Look.DARK


@dataclass(frozen=True)
class YuvFrame:
    """One picture: Y at full size, U and V at half width and half height (yuv420p)."""

    y: Bytes2D
    u: Bytes2D
    v: Bytes2D

    def packed(self) -> Bytes2D:
        """The three planes stacked as one (height * 3/2, width) array, PyAV's yuv420p layout."""
        h, w = self.y.shape
        return np.concatenate([self.y.ravel(), self.u.ravel(), self.v.ravel()]).reshape(h * 3 // 2, w)


def rgb_to_yuv(rgb: npt.NDArray[np.float32]) -> tuple[Plane, Plane, Plane]:
    """BT.601 limited range (what decoders assume when the stream does not say)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    y = 16 + 219 * luma
    u = 128 + 224 * (b - luma) / 1.772
    v = 128 + 224 * (r - luma) / 1.402
    return y.astype(np.float32), u.astype(np.float32), v.astype(np.float32)


def apply_look(rgb: npt.NDArray[np.float32], look: Look, cone: Plane | float = 1.0) -> npt.NDArray[np.float32]:
    """What the camera sees of scene colours `rgb` (..., 3) under `look`; `cone` is the IR falloff."""
    if look is Look.DAY:
        return rgb
    if look is Look.DARK:
        return (rgb * DARK_FACTOR).astype(np.float32)
    wr, wg, wb = IR_WEIGHTS
    grey = wr * rgb[..., 0] + wg * rgb[..., 1] + wb * rgb[..., 2]
    level = (IR_LIFT + (1 - IR_LIFT) * np.clip(grey, 0, 1)) ** IR_GAMMA * cone
    return np.repeat(np.asarray(level, dtype=np.float32)[..., None], 3, axis=-1)


def _halve(plane: Plane) -> Plane:
    h, w = plane.shape
    halved: Plane = plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)
    return halved


def _fill(
    img: npt.NDArray[np.float32],
    box: tuple[float, float, float, float],
    colour: tuple[float, float, float] | npt.NDArray[np.float64],
) -> None:
    """Paint a rectangle given in frame fractions (at least one pixel) onto an (h, w, 3) image."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    rows = slice(round(y0 * h), max(round(y1 * h), round(y0 * h) + 1))
    cols = slice(round(x0 * w), max(round(x1 * w), round(x0 * w) + 1))
    img[rows, cols] = colour


SHELVES = ((0.04, 0.30), (0.37, 0.63), (0.70, 0.96))
"""Horizontal extent of the three shelf units on the back wall (frame fractions)."""
SHELF_TOP, WALL_BOTTOM = 0.12, 0.62
SHELF_BOARDS = 4


def shop_background(width: int, height: int, seed: int) -> npt.NDArray[np.float32]:
    """The empty shop in daylight as an RGB (height, width, 3) float image in 0..1."""
    rng = np.random.default_rng(seed)
    ys = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    xs = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    img = np.empty((height, width, 3), dtype=np.float32)

    # Wall: lit from above, with a faint plaster ripple so that it is not a flat colour.
    ripple = 0.015 * np.sin(xs * 53.0 + ys * 7.0) * np.sin(ys * 41.0 - xs * 11.0)
    wall = (1.0 - 0.25 * ys) + ripple
    img[...] = np.stack([0.84 * wall, 0.79 * wall, 0.68 * wall], axis=-1)

    # Floor: tiles in perspective (lines converge on a vanishing point above the shelves).
    depth = 1.0 / np.maximum(ys - 0.45, 1e-3)
    u = (xs - 0.5) * depth
    checker = (np.floor(u * 1.5).astype(np.int32) + np.floor(depth * 2.0).astype(np.int32)) % 2
    tile = np.where(checker == 0, 0.60, 0.67).astype(np.float32) * (0.9 + 0.1 * ys)
    first_floor_row = round(WALL_BOTTOM * height)
    img[first_floor_row:] = tile[first_floor_row:, :, None]
    _fill(img, (0.0, WALL_BOTTOM - 0.01, 1.0, WALL_BOTTOM), (0.30, 0.28, 0.26))

    # Ceiling lamps.
    for x in (0.15, 0.5, 0.85):
        _fill(img, (x - 0.08, 0.0, x + 0.08, 0.025), (1.0, 1.0, 0.96))

    board_gap = (WALL_BOTTOM - SHELF_TOP) / SHELF_BOARDS
    for left, right in SHELVES:
        _fill(img, (left, SHELF_TOP, right, WALL_BOTTOM), (0.36, 0.26, 0.17))
        _fill(img, (left + 0.008, SHELF_TOP + 0.01, right - 0.008, WALL_BOTTOM - 0.01), (0.22, 0.18, 0.15))
        for b in range(SHELF_BOARDS):
            top = SHELF_TOP + b * board_gap
            board = top + board_gap - 0.012
            _fill(img, (left, board, right, board + 0.012), (0.45, 0.33, 0.22))
            x = left + 0.012
            while True:
                w = float(rng.uniform(0.008, 0.03))
                if x + w > right - 0.012:
                    break
                h = float(rng.uniform(0.5, 0.9)) * (board_gap - 0.02)
                colour = rng.uniform(0.1, 0.95, size=3)
                _fill(img, (x, board - h, x + w, board), colour)
                _fill(img, (x, board - h * 0.6, x + w, board - h * 0.45), colour * 0.5 + 0.45)  # a label
                x += w + float(rng.uniform(0.001, 0.006))
            _fill(img, (left + 0.02, board + 0.003, left + 0.035, board + 0.01), (0.97, 0.97, 0.97))  # price tag
    return np.clip(img, 0.0, 1.0)


def ir_cone(width: int, height: int) -> Plane:
    """Brightness falloff of the IR illuminator: 1 in the middle, 1 - IR_CONE in the corners."""
    ys = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height * 2 - 1
    xs = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width * 2 - 1
    return (1 - IR_CONE * (xs**2 + ys**2) / 2).astype(np.float32)


@dataclass(frozen=True)
class _Sprite:
    y: Plane
    u: Plane
    v: Plane
    alpha: npt.NDArray[np.bool_]
    alpha_half: npt.NDArray[np.bool_]


def figure_rgba(figure: Figure, w: int, h: int, pose: float) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """A walking person as RGB and a mask, `pose` in -1..1 the stride (legs and arms swing)."""
    v = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    u = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    rgb = np.zeros((h, w, 3), dtype=np.float32)
    mask = np.zeros((h, w), dtype=bool)

    def paint(region: npt.NDArray[np.bool_], colour: tuple[float, float, float] | npt.NDArray[np.float32]) -> None:
        rgb[region] = colour
        mask[region] = True

    swing = 0.18 * pose * np.clip((v - 0.55) / 0.45, 0, 1)
    shirt = np.asarray(figure.shirt, dtype=np.float32)
    trousers = np.asarray(figure.trousers, dtype=np.float32)
    # Legs first so the torso overlaps them; the swing makes them scissor.
    paint((v >= 0.55) & (np.abs(u - 0.35 - swing) < 0.13), trousers)
    paint((v >= 0.55) & (np.abs(u - 0.65 + swing) < 0.13), trousers * 0.85)
    paint((v >= 0.96) & mask, (0.08, 0.07, 0.07))
    arm_swing = 0.06 * pose * np.clip((v - 0.2) / 0.3, 0, 1)
    paint(
        (v >= 0.2) & (v < 0.52) & ((np.abs(u - 0.06 - arm_swing) < 0.06) | (np.abs(u - 0.94 + arm_swing) < 0.06)),
        shirt * 0.8,
    )
    stripes = np.where((v * 40).astype(np.int32) % 3 == 0, 0.75, 1.0).astype(np.float32)[..., None]
    torso = (v >= 0.17) & (v < 0.57) & (u >= 0.12) & (u <= 0.88)
    rgb[torso] = (np.broadcast_to(shirt * stripes, (h, w, 3)))[torso]
    mask[torso] = True
    head = ((u - 0.5) / 0.3) ** 2 + ((v - 0.085) / 0.085) ** 2 <= 1
    paint(head, figure.skin)
    paint(head & (v < 0.06), (0.18, 0.12, 0.08))  # hair
    return rgb, mask


class Renderer:
    """Frames of one scene at one resolution. Not thread-safe (caches); one per encoder thread."""

    def __init__(self, scene: Scene, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
        self.scene = scene
        self.width = width
        self.height = height
        self._sprites: dict[tuple[int, Look, int], _Sprite] = {}
        self._views: dict[tuple[Look, bool, bool], Planes] = {}
        self._hands: dict[Look, Planes] = {}
        self._cone = ir_cone(width, height)

    @cached_property
    def _rgb(self) -> npt.NDArray[np.float32]:
        return shop_background(self.width, self.height, self.scene.seed)

    @cached_property
    def _turned_rgb(self) -> npt.NDArray[np.float32]:
        x, y, scale = TURNED_VIEW
        big = shop_background(round(self.width * scale), round(self.height * scale), self.scene.seed)
        x0, y0 = round(x * big.shape[1]), round(y * big.shape[0])
        return big[y0 : y0 + self.height, x0 : x0 + self.width]

    def _view(self, look: Look, turned: bool = False, defocused: bool = False) -> Planes:
        """The empty shop as the camera sees it, cached: a still picture is blurred only once."""
        key = (look, turned, defocused)
        planes = self._views.get(key)
        if planes is None:
            y, u, v = rgb_to_yuv(apply_look(self._turned_rgb if turned else self._rgb, look, self._cone))
            planes = (y, _halve(u), _halve(v))
            if defocused:
                planes = self._defocus(planes)
            self._views[key] = planes
        return planes

    def _defocus(self, planes: Planes) -> Planes:
        y, u, v = planes
        sigma = DEFOCUS_BLUR * self.width
        return _blur(y, sigma), _blur(u, sigma / 2), _blur(v, sigma / 2)

    def _hand(self, look: Look) -> Planes:
        hand = self._hands.get(look)
        if hand is None:
            ys = (np.arange(self.height, dtype=np.float32)[:, None, None] + 0.5) / self.height
            shade = np.float32(1) + np.float32(COVER_SHADE) * (1 - ys)
            colour = np.asarray(COVER_RGB, dtype=np.float32) * shade
            rgb = np.broadcast_to(colour, (self.height, self.width, 3)).astype(np.float32)
            y, u, v = rgb_to_yuv(apply_look(rgb, look, self._cone))
            hand = self._hands[look] = (y, _halve(u), _halve(v))
        return hand

    def background(self, look: Look, *, turned: bool = False) -> YuvFrame:
        """The empty shop under `look`, without noise (a reference for tests)."""
        y, u, v = self._view(look, turned)
        return YuvFrame(_to_bytes(y), _to_bytes(u), _to_bytes(v))

    def _sprite(self, index: int, look: Look, pose: int) -> _Sprite:
        key = (index, look, pose)
        sprite = self._sprites.get(key)
        if sprite is None:
            figure = self.scene.figures[index]
            w = _even(figure.width * self.width)
            h = _even(figure.height * self.height)
            rgb, alpha = figure_rgba(figure, w, h, math.sin(2 * math.pi * pose / POSES))
            y, u, v = rgb_to_yuv(apply_look(rgb, look))
            alpha_half = alpha.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) >= 0.5
            sprite = _Sprite(y, _halve(u), _halve(v), alpha, alpha_half)
            self._sprites[key] = sprite
        return sprite

    def frame(self, index: int, fps: int) -> YuvFrame:
        """Frame number `index` of the loop at `fps` frames per second."""
        t = index / fps
        scene = self.scene
        look = look_at(scene, t)
        figures = scene.figure_boxes(t)
        defocused = scene.defocused(t)
        by, bu, bv = self._view(look, scene.turned(t), defocused and not figures)
        y, u, v = by.copy(), bu.copy(), bv.copy()
        for fig_index, _box in figures:
            self._paste(fig_index, look, t, y, u, v)
        if defocused and figures:
            y, u, v = self._defocus((y, u, v))
        self._cover(look, t, y, u, v)
        rng = np.random.default_rng((self.scene.seed, index))
        sigma = np.float32(self.scene.noise_sigma(t))
        luma_fields, chroma_fields = self._noise_fields
        y += _noise(luma_fields, y.shape, rng) * sigma
        if look is not Look.IR:
            # Under IR the sensor sees no colour at all, so there is no colour noise either.
            chroma_sigma = sigma * np.float32(CHROMA_NOISE_SHARE)
            u += _noise(chroma_fields, u.shape, rng) * chroma_sigma
            v += _noise(chroma_fields, v.shape, rng) * chroma_sigma
        return YuvFrame(_to_bytes(y), _to_bytes(u), _to_bytes(v))

    @cached_property
    def _noise_fields(self) -> tuple[list[Plane], list[Plane]]:
        # Four seed parts, so never the same random stream as a frame's (seed, index).
        rng = np.random.default_rng((self.scene.seed, self.width, self.height, NOISE_FIELDS))
        h, w, m = self.height, self.width, NOISE_MARGIN
        luma = [rng.standard_normal((h + m, w + m), dtype=np.float32) for _ in range(NOISE_FIELDS)]
        chroma = [rng.standard_normal((h // 2 + m, w // 2 + m), dtype=np.float32) for _ in range(NOISE_FIELDS)]
        return luma, chroma

    def _cover(self, look: Look, t: float, y: Plane, u: Plane, v: Plane) -> None:
        """Paint the part of the frame the hand hides: it slides in from the left edge."""
        since = self.scene.since_switch(SwitchKind.COVER, t)
        swept = min(since / COVER_SWEEP_S, 1.0)
        share = swept if self.scene.covered(t) else 1.0 - swept
        half = round(share * self.width / 2)
        if half <= 0:
            return
        hy, hu, hv = self._hand(look)
        y[:, : 2 * half] = hy[:, : 2 * half]
        u[:, :half] = hu[:, :half]
        v[:, :half] = hv[:, :half]

    def _paste(self, fig_index: int, look: Look, t: float, y: Plane, u: Plane, v: Plane) -> None:
        figure = self.scene.figures[fig_index]
        where = figure.position(t)
        assert where is not None  # figure_boxes only lists figures in the frame
        pose = round(_walked(figure, t, self.width / self.height) / STRIDE * POSES) % POSES
        sprite = self._sprite(fig_index, look, pose)
        box = figure.box_at(where)
        x0 = _even(box.x0 * self.width)
        y0 = _even(box.y0 * self.height)
        scale = 1.0
        if look is Look.IR:
            cy = min(max(int(where.y * self.height) - 1, 0), self.height - 1)
            cx = min(max(int(where.x * self.width), 0), self.width - 1)
            scale = float(self._cone[cy, cx])
        _blend(y, sprite.y, sprite.alpha, x0, y0, scale)
        _blend(u, sprite.u, sprite.alpha_half, x0 // 2, y0 // 2, 1.0)
        _blend(v, sprite.v, sprite.alpha_half, x0 // 2, y0 // 2, 1.0)


def _blend(plane: Plane, sprite: Plane, alpha: npt.NDArray[np.bool_], x0: int, y0: int, luma_scale: float) -> None:
    """Paste `sprite` where `alpha` is set, with its top-left corner at (x0, y0), clipped."""
    h, w = plane.shape
    sh, sw = sprite.shape
    px0, py0 = max(x0, 0), max(y0, 0)
    px1, py1 = min(x0 + sw, w), min(y0 + sh, h)
    if px0 >= px1 or py0 >= py1:
        return
    src = sprite[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
    if luma_scale != 1.0:
        src = 16 + (src - 16) * np.float32(luma_scale)
    region = plane[py0:py1, px0:px1]
    mask = alpha[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
    region[mask] = src[mask]


def _blur(plane: Plane, sigma: float) -> Plane:
    """A Gaussian-like blur: DEFOCUS_PASSES box blurs whose variances add up to sigma², edges repeated.
    Cumulative sums make each pass cost the same whatever its width (numpy only, no OpenCV)."""
    radius = max(1, round((math.sqrt(12 * sigma**2 / DEFOCUS_PASSES + 1) - 1) / 2))
    width = 2 * radius + 1
    out = plane
    for _ in range(DEFOCUS_PASSES):
        for axis in (0, 1):
            moved = np.swapaxes(out, 0, axis)
            sums = np.cumsum(np.pad(moved, ((radius + 1, radius), (0, 0)), mode="edge"), axis=0, dtype=np.float32)
            out = np.swapaxes((sums[width:] - sums[:-width]) / np.float32(width), 0, axis)
    return np.ascontiguousarray(out)


def _walked(figure: Figure, t: float, aspect: float) -> float:
    """Distance walked since entering, in frame heights (drives the walking pose)."""
    dist = 0.0
    for a, b in zip(figure.waypoints, figure.waypoints[1:], strict=False):
        if t <= a.t:
            break
        k = min((t - a.t) / (b.t - a.t), 1.0)
        dist += k * math.hypot((b.x - a.x) * aspect, b.y - a.y)
    return dist


def _noise(fields: list[Plane], shape: tuple[int, ...], rng: np.random.Generator) -> Plane:
    """Unit gaussian noise of `shape`: a random window of a random pre-drawn field (a view)."""
    h, w = shape
    field = fields[int(rng.integers(len(fields)))]
    dy, dx = (int(d) for d in rng.integers(0, NOISE_MARGIN + 1, size=2))
    return field[dy : dy + h, dx : dx + w]


def _even(value: float) -> int:
    return 2 * round(value / 2)


def _to_bytes(plane: Plane) -> Bytes2D:
    return np.clip(np.rint(plane), 0, 255).astype(np.uint8)
