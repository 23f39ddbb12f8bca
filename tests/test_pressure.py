"""Recording before analysis: the pressure a recorder that fell behind raises, and who gives way."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cameras.pressure import HOLD_S, RecordingPressure
from tests.test_motion_stream import _encoded, _run_analyser


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pressure_holds_for_a_while_after_the_last_report(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pressure = RecordingPressure(clock)
    assert not pressure.active
    pressure.recorder_behind()
    clock.now += HOLD_S - 0.1
    assert pressure.active
    pressure.recorder_behind()  # a second report extends it
    clock.now += HOLD_S - 0.1
    assert pressure.active and pressure.raised == 2
    clock.now += 0.2
    assert not pressure.active
    # The owner is told once, with what to do, not at every report.
    warnings = [r.getMessage() for r in caplog.records if r.name == "appliance.cameras.pressure"]
    assert len(warnings) == 1 and "fewer cameras" in warnings[0]


def test_analysers_give_way_while_the_recorders_are_behind(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded("store_day_person", tmp_path_factory)
    pressure = RecordingPressure()
    pressure.recorder_behind()
    analyser, found = _run_analyser(loop, tmp_path / "a.h264", behind=False, pressure=pressure)
    assert pressure.active  # the whole scene went by within HOLD_S
    assert analyser.frames_decoded == 0 and analyser.packets_skipped == len(loop.units)
    assert found == []
