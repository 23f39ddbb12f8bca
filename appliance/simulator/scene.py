"""The script of a simulated store scene: what happens when, as plain data.

A scene is a loop of `duration` seconds: a still background, figures walking along waypoints,
switches of the shop light and of the camera's night (IR) mode, and tampering with the camera
(the lens covered, the camera turned away, the lens out of focus), scripted as switches too.
Tests read the ground truth from here (`timeline()`, `figure_boxes()`, `light_on()`, `ir_on()`,
`covered()`, `turned()`, `defocused()`), and the renderer draws from the same data, so the
picture and the truth cannot disagree.

Coordinates are fractions of the frame: x from the left edge, y from the top edge, so one
script serves every resolution. A figure's position is the middle of its feet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

RGB = tuple[float, float, float]
"""A colour as red, green, blue in 0..1."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in frame fractions (x0 < x1, y0 < y1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def clipped(self) -> Box | None:
        """The part inside the frame, or None when nothing of it is visible."""
        x0, y0 = max(self.x0, 0.0), max(self.y0, 0.0)
        x1, y1 = min(self.x1, 1.0), min(self.y1, 1.0)
        if x0 >= x1 or y0 >= y1:
            return None
        return Box(x0, y0, x1, y1)


@dataclass(frozen=True)
class Waypoint:
    """Where a figure's feet are at time `t` (seconds into the loop)."""

    t: float
    x: float
    y: float


@dataclass(frozen=True)
class Figure:
    """A person walking through the scene along straight lines between waypoints.

    The first and the last waypoint must put the figure just outside the frame, so that it
    starts crossing the edge exactly at `enters_at` and is gone exactly at `leaves_at`.
    """

    waypoints: tuple[Waypoint, ...]
    width: float = 0.07
    height: float = 0.42
    shirt: RGB = (0.70, 0.15, 0.12)
    trousers: RGB = (0.12, 0.14, 0.25)
    skin: RGB = (0.85, 0.66, 0.52)

    def __post_init__(self) -> None:
        if len(self.waypoints) < 2:
            raise ValueError("a figure needs at least two waypoints (in and out of the frame)")
        times = [w.t for w in self.waypoints]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError(f"waypoint times must increase strictly, got {times}")
        for end in (self.waypoints[0], self.waypoints[-1]):
            if self.box_at(end).clipped() is not None:
                raise ValueError(
                    f"the figure must be outside the frame at its first and last waypoint (t={end.t}); "
                    f"move x beyond -width/2 or 1+width/2"
                )

    @property
    def enters_at(self) -> float:
        return self.waypoints[0].t

    @property
    def leaves_at(self) -> float:
        return self.waypoints[-1].t

    def position(self, t: float) -> Waypoint | None:
        """The feet position at `t`, or None outside [enters_at, leaves_at]."""
        if not self.enters_at <= t <= self.leaves_at:
            return None
        for a, b in zip(self.waypoints, self.waypoints[1:], strict=False):
            if a.t <= t <= b.t:
                k = (t - a.t) / (b.t - a.t)
                return Waypoint(t, a.x + k * (b.x - a.x), a.y + k * (b.y - a.y))
        raise AssertionError("unreachable: t lies between the first and last waypoint")

    def box_at(self, where: Waypoint) -> Box:
        return Box(where.x - self.width / 2, where.y - self.height, where.x + self.width / 2, where.y)


class SwitchKind(StrEnum):
    LIGHT = "light"
    """The shop's ceiling light."""
    IR = "ir"
    """The camera's night mode: IR illuminator on, colour off."""
    COVER = "cover"
    """A hand or tape over the lens."""
    TURN = "turn"
    """The camera turned away: it looks at another part of the shop."""
    DEFOCUS = "defocus"
    """The lens out of focus."""


@dataclass(frozen=True)
class Switch:
    """At `t` the light, the night mode or a tampering becomes `on` (instantly, as a relay does;
    only a hand takes a moment to cover the lens, see render.COVER_SWEEP_S)."""

    t: float
    kind: SwitchKind
    on: bool


class HappeningKind(StrEnum):
    FIGURE_ENTERS = "figure_enters"
    FIGURE_LEAVES = "figure_leaves"
    LIGHT_ON = "light_on"
    LIGHT_OFF = "light_off"
    IR_ON = "ir_on"
    IR_OFF = "ir_off"
    LENS_COVERED = "lens_covered"
    LENS_UNCOVERED = "lens_uncovered"
    CAMERA_TURNED = "camera_turned"
    CAMERA_TURNED_BACK = "camera_turned_back"
    DEFOCUSED = "defocused"
    REFOCUSED = "refocused"


_HAPPENINGS = {
    (SwitchKind.LIGHT, True): HappeningKind.LIGHT_ON,
    (SwitchKind.LIGHT, False): HappeningKind.LIGHT_OFF,
    (SwitchKind.IR, True): HappeningKind.IR_ON,
    (SwitchKind.IR, False): HappeningKind.IR_OFF,
    (SwitchKind.COVER, True): HappeningKind.LENS_COVERED,
    (SwitchKind.COVER, False): HappeningKind.LENS_UNCOVERED,
    (SwitchKind.TURN, True): HappeningKind.CAMERA_TURNED,
    (SwitchKind.TURN, False): HappeningKind.CAMERA_TURNED_BACK,
    (SwitchKind.DEFOCUS, True): HappeningKind.DEFOCUSED,
    (SwitchKind.DEFOCUS, False): HappeningKind.REFOCUSED,
}


@dataclass(frozen=True)
class Happening:
    """One entry of the ground truth: `kind` at `t` seconds into the loop.

    `figure` is the index into `Scene.figures` for figure happenings, else None.
    """

    t: float
    kind: HappeningKind
    figure: int | None = None


@dataclass(frozen=True)
class Scene:
    """A looping store scene. Everything a test may want to know is derived from these fields."""

    name: str
    duration: float
    figures: tuple[Figure, ...] = ()
    switches: tuple[Switch, ...] = ()
    light_on_at_start: bool = True
    ir_on_at_start: bool = False
    noise_day: float = 1.5
    """Standard deviation of the sensor noise on luma (8-bit steps) in colour mode with light."""
    noise_night: float = 5.0
    """The same in the dark or under IR, where the sensor's gain is turned up."""
    seed: int = 1
    """Seeds the shop's shelf contents and the noise, so that a scene renders the same every time."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"scene {self.name!r}: duration must be positive, got {self.duration}")
        for s in self.switches:
            if not 0 <= s.t < self.duration:
                raise ValueError(f"scene {self.name!r}: switch at t={s.t} lies outside the loop 0..{self.duration}")
        for i, f in enumerate(self.figures):
            if f.enters_at < 0 or f.leaves_at > self.duration:
                raise ValueError(f"scene {self.name!r}: figure {i} walks outside the loop 0..{self.duration}")
        if any(self._state(kind) != self._initial(kind) for kind in SwitchKind):
            raise ValueError(
                f"scene {self.name!r}: the light, night mode and tampering must end the loop as they start it, "
                "or every wrap of the loop would be an unscripted switch"
            )

    def _initial(self, kind: SwitchKind) -> bool:
        return {SwitchKind.LIGHT: self.light_on_at_start, SwitchKind.IR: self.ir_on_at_start}.get(kind, False)

    def _state(self, kind: SwitchKind, until: float | None = None) -> bool:
        """The state after the switches of `kind` up to `until` (all of them when None)."""
        state = self._initial(kind)
        for s in sorted(self.switches, key=lambda s: s.t):
            if s.kind is kind and (until is None or s.t <= until):
                state = s.on
        return state

    def light_on(self, t: float) -> bool:
        return self._state(SwitchKind.LIGHT, t % self.duration)

    def ir_on(self, t: float) -> bool:
        return self._state(SwitchKind.IR, t % self.duration)

    def covered(self, t: float) -> bool:
        return self._state(SwitchKind.COVER, t % self.duration)

    def turned(self, t: float) -> bool:
        return self._state(SwitchKind.TURN, t % self.duration)

    def defocused(self, t: float) -> bool:
        return self._state(SwitchKind.DEFOCUS, t % self.duration)

    def since_switch(self, kind: SwitchKind, t: float) -> float:
        """Seconds since the last switch of `kind` at or before `t` in this pass of the loop (inf: none)."""
        t %= self.duration
        return min((t - s.t for s in self.switches if s.kind is kind and s.t <= t), default=math.inf)

    def noise_sigma(self, t: float) -> float:
        """A covered lens is dark, so the camera turns its gain up, as at night."""
        day = self.light_on(t) and not self.ir_on(t) and not self.covered(t)
        return self.noise_day if day else self.noise_night

    def figure_boxes(self, t: float) -> list[tuple[int, Box]]:
        """The visible part of each figure at `t` as (figure index, box), clipped to the frame;
        none while the lens is covered or the camera looks elsewhere."""
        t %= self.duration
        boxes: list[tuple[int, Box]] = []
        if self.covered(t) or self.turned(t):
            return boxes
        for i, f in enumerate(self.figures):
            where = f.position(t)
            if where is None:
                continue
            box = f.box_at(where).clipped()
            if box is not None:
                boxes.append((i, box))
        return boxes

    def timeline(self) -> list[Happening]:
        """Every scripted happening in the loop, in time order."""
        items = [Happening(f.enters_at, HappeningKind.FIGURE_ENTERS, i) for i, f in enumerate(self.figures)]
        items += [Happening(f.leaves_at, HappeningKind.FIGURE_LEAVES, i) for i, f in enumerate(self.figures)]
        items += [Happening(s.t, _HAPPENINGS[(s.kind, s.on)]) for s in self.switches]
        return sorted(items, key=lambda h: (h.t, h.kind))

    def motion_intervals(self) -> list[tuple[float, float]]:
        """(start, end) of each stretch in which at least one figure is in the frame, merged."""
        spans = sorted((f.enters_at, f.leaves_at) for f in self.figures)
        merged: list[tuple[float, float]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def to_dict(self) -> dict[str, Any]:
        """The script as JSON-ready data (also the basis of the encode cache key)."""
        doc = asdict(self)
        doc["timeline"] = [asdict(h) for h in self.timeline()]
        return doc

    def fingerprint(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)
