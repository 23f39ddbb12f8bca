"""The named scenes: one per situation motion detection must get right, and a demo mixing them.

Each single-situation scene is 20 s: about 4-6 s of still picture first (a detector settles),
the happening, then a still tail, so a test can look for an alert inside the happening's window
and for silence outside it. Times are exact; `Scene.timeline()` lists them.

The tampering scenes are 32 s: the tamper checks want a condition to last 10 s before they raise
it (docs/motion.md), so the lens stays covered or out of focus for 15 s, and a turned camera
stays turned for 18 s.
"""

from __future__ import annotations

from appliance.simulator.scene import Figure, Scene, Switch, SwitchKind, Waypoint

SHORT_LOOP = 20.0
"""Length of the single-situation scenes (s)."""
DEMO_LOOP = 40.0
"""Length of the demo scene (s)."""
TAMPER_LOOP = 32.0
"""Length of the tampering scenes (s)."""
TAMPER_AT = 12.0
"""When the tampering starts in the tampering scenes (s): a daemon that connects in the first
seconds of the loop learns the normal picture first."""

_FIGURE_WIDTH = 0.07
_OFF_EDGE = _FIGURE_WIDTH / 2 + 1e-6
"""A figure centred this far beyond the edge just touches the frame (the 1e-6 absorbs rounding)."""
_OFF_LEFT = -_OFF_EDGE
_OFF_RIGHT = 1 + _OFF_EDGE
_AISLE_Y = 0.9
"""Where the feet are when a figure walks along the front aisle (frame fraction from the top)."""


def shopper(enter: float, leave: float, *, shirt: tuple[float, float, float] = (0.70, 0.15, 0.12)) -> Figure:
    """A customer who walks in from the left at `enter`, stops at a shelf, browses, and leaves
    to the right, gone at `leave` (3 s to walk in, 3 s to walk out, browsing in between)."""
    if leave - enter <= 6.0:
        raise ValueError(f"a shopper needs more than 6 s between entering and leaving, got {leave - enter}")
    return Figure(
        waypoints=(
            Waypoint(enter, _OFF_LEFT, _AISLE_Y),
            Waypoint(enter + 3.0, 0.42, 0.80),
            Waypoint(leave - 3.0, 0.48, 0.80),
            Waypoint(leave, _OFF_RIGHT, _AISLE_Y),
        ),
        width=_FIGURE_WIDTH,
        shirt=shirt,
    )


def passer(
    enter: float,
    leave: float,
    y: float,
    *,
    leftwards: bool = False,
    shirt: tuple[float, float, float] = (0.70, 0.15, 0.12),
    width: float = _FIGURE_WIDTH,
    height: float = 0.42,
) -> Figure:
    """Someone walking straight across the frame with the feet at `y`, in at `enter`, gone at `leave`."""
    ends = (-width / 2 - 1e-6, 1 + width / 2 + 1e-6)
    start, end = (ends[1], ends[0]) if leftwards else ends
    return Figure(
        waypoints=(Waypoint(enter, start, y), Waypoint(leave, end, y)), width=width, height=height, shirt=shirt
    )


def _light(t: float, on: bool) -> Switch:
    return Switch(t, SwitchKind.LIGHT, on)


def _ir(t: float, on: bool) -> Switch:
    return Switch(t, SwitchKind.IR, on)


def tampering(kind: SwitchKind, start: float, end: float) -> tuple[Switch, Switch]:
    """`kind` of tampering from `start` until `end` (s)."""
    return Switch(start, kind, True), Switch(end, kind, False)


_BUSY_FIGURES = (
    shopper(3.0, 13.0),
    passer(4.0, 10.0, 0.86, shirt=(0.20, 0.55, 0.25)),
    passer(5.5, 12.5, 0.74, leftwards=True, shirt=(0.85, 0.80, 0.20)),
    passer(8.0, 14.0, 0.95, shirt=(0.15, 0.30, 0.75)),
    shopper(11.0, 22.0, shirt=(0.55, 0.20, 0.60)),
    passer(13.0, 19.0, 0.80, leftwards=True, shirt=(0.90, 0.90, 0.88)),
    passer(15.0, 21.0, 0.90, shirt=(0.10, 0.10, 0.10)),
    # A customer right under the camera: half the frame wide for a moment.
    passer(19.0, 21.0, 1.15, leftwards=True, width=0.25, height=1.1, shirt=(0.30, 0.25, 0.20)),
    passer(21.0, 27.0, 0.76, shirt=(0.75, 0.35, 0.10)),
    passer(22.0, 28.0, 0.92, leftwards=True, shirt=(0.40, 0.60, 0.80)),
)


SCENES: dict[str, Scene] = {
    s.name: s
    for s in (
        Scene(
            name="store_day_person",
            duration=SHORT_LOOP,
            figures=(shopper(4.0, 14.0),),
            description="daylight; a shopper walks in at 4 s, browses, is gone at 14 s",
        ),
        Scene(
            name="store_night_ir_person",
            duration=SHORT_LOOP,
            figures=(shopper(4.0, 14.0, shirt=(0.15, 0.35, 0.70)),),
            light_on_at_start=False,
            ir_on_at_start=True,
            description="night under IR; a person walks in at 4 s, is gone at 14 s",
        ),
        Scene(
            name="light_switch",
            duration=SHORT_LOOP,
            switches=(_light(6.0, False), _light(14.0, True)),
            description="daylight, nobody; the light goes off at 6 s and on at 14 s",
        ),
        Scene(
            name="ir_switch",
            duration=SHORT_LOOP,
            switches=(_ir(6.0, True), _ir(14.0, False)),
            description="nobody; the camera switches to IR night mode at 6 s and back to colour at 14 s",
        ),
        Scene(
            name="night_noise",
            duration=SHORT_LOOP,
            light_on_at_start=False,
            ir_on_at_start=True,
            noise_night=8.0,
            description="night under IR, nobody, strong sensor noise all the time",
        ),
        Scene(
            name="tamper_covered",
            duration=TAMPER_LOOP,
            switches=tampering(SwitchKind.COVER, TAMPER_AT, TAMPER_AT + 15.0),
            description="daylight, nobody; a hand covers the lens at 12 s (the picture goes dark), gone at 27 s",
        ),
        Scene(
            name="tamper_turned",
            duration=TAMPER_LOOP,
            switches=tampering(SwitchKind.TURN, TAMPER_AT, TAMPER_AT + 18.0),
            description="daylight, nobody; the camera is knocked askew at 12 s and looks at the shelves "
            "close up until it is put back at 30 s",
        ),
        Scene(
            name="tamper_defocus",
            duration=TAMPER_LOOP,
            switches=tampering(SwitchKind.DEFOCUS, TAMPER_AT, TAMPER_AT + 15.0),
            description="daylight, nobody; the lens goes out of focus at 12 s and is focused again at 27 s",
        ),
        Scene(
            name="tamper_none_busy",
            duration=TAMPER_LOOP,
            figures=_BUSY_FIGURES,
            switches=(_light(12.0, False), _light(18.0, True)),
            description="a busy shop, not tampering: ten people pass 3-28 s, up to four at once, one right "
            "under the camera at 19-21 s; the light goes off at 12 s and on at 18 s",
        ),
        Scene(
            name="demo",
            duration=DEMO_LOOP,
            figures=(shopper(3.0, 11.0), shopper(20.0, 28.0, shirt=(0.20, 0.55, 0.25))),
            switches=(_light(15.0, False), _ir(16.0, True), _light(33.0, True), _ir(34.0, False)),
            description=(
                "a shopper 3-11 s; light off at 15 s, IR on at 16 s; a person under IR 20-28 s; "
                "light on at 33 s, colour again at 34 s"
            ),
        ),
    )
}
DEFAULT_SCENE = "demo"


def get_scene(name: str) -> Scene:
    try:
        return SCENES[name]
    except KeyError:
        raise ValueError(f"unknown scene {name!r}; choose one of: {', '.join(SCENES)}") from None
