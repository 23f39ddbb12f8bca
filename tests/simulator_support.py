"""Shared pieces of the camera simulator's tests: a tiny scene that encodes in a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.simulator.scene import Figure, Scene, Waypoint

TINY = Scene(
    name="tiny_walk",
    duration=2.0,
    figures=(Figure((Waypoint(0.2, -0.04, 0.9), Waypoint(1.8, 1.04, 0.9))),),
    description="a 2 s loop with a figure crossing, so tests see the loop wrap quickly",
)
TINY_FPS = 10
TINY_GOP = 0.5
"""A keyframe every 5 frames: a new client waits at most half a second."""


def cache_dir(factory: pytest.TempPathFactory) -> Path:
    """One encode cache for the whole test session (each scene is encoded once per run)."""
    path = factory.getbasetemp() / "simulator-cache"
    path.mkdir(exist_ok=True)
    return path
