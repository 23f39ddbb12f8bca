"""Recording before analysis when the box is short of CPU.

Every camera's threads share two cores and Python's GIL. When there are more cameras than the box
can analyse (about 40 on two cores), something has to give, and footage must not be it: a recorder
that finds itself behind (a batch of packets far bigger than its usual quarter second) raises the
pressure, and while it is raised every analyser skips packets instead of decoding them, resuming
at the next keyframe once it is over. Motion events and alerts are then late or missed for those
seconds; the footage is complete and can still be reviewed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

HOLD_S: Final = 3.0
"""How long analysis gives way after a recorder last reported being behind: long enough for the
recorders to catch up on what the fanout queued for them."""


class RecordingPressure:
    """Shared by a box's recorders (who raise it) and analysers (who give way). Thread-safe: a
    float written and read whole."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self.raised = 0
        """How often a recorder reported being behind (for /metrics and the benchmark)."""

    def recorder_behind(self) -> None:
        self.raised += 1
        self._until = self._clock() + HOLD_S

    @property
    def active(self) -> bool:
        return self._clock() < self._until
