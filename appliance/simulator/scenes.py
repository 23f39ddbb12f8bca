"""The named scenes: one per situation motion detection must get right, and a demo mixing them.

Each single-situation scene is 20 s: about 4-6 s of still picture first (a detector settles),
the happening, then a still tail, so a test can look for an alert inside the happening's window
and for silence outside it. Times are exact; `Scene.timeline()` lists them.
"""

from __future__ import annotations

from appliance.simulator.scene import Figure, Scene, Switch, SwitchKind, Waypoint

SHORT_LOOP = 20.0
"""Length of the single-situation scenes (s)."""
DEMO_LOOP = 40.0
"""Length of the demo scene (s)."""

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


def _light(t: float, on: bool) -> Switch:
    return Switch(t, SwitchKind.LIGHT, on)


def _ir(t: float, on: bool) -> Switch:
    return Switch(t, SwitchKind.IR, on)


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
