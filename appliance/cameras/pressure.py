"""Recording before analysis when the box is short of CPU.

Every camera's threads share two cores and Python's GIL. When there are more cameras than the box
can analyse (about 40 on two cores), something has to give, and footage must not be it: a recorder
that finds itself behind (a batch of packets far bigger than its usual quarter second) raises the
pressure, and while it is raised every analyser skips packets instead of decoding them, resuming
at the next keyframe once it is over. Motion events and alerts are then late or missed for those
seconds; the footage is complete and can still be reviewed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

HOLD_S: Final = 3.0
"""How long analysis gives way after a recorder last reported being behind: long enough for the
recorders to catch up on what the fanout queued for them."""
WARN_EVERY_S: Final = 300.0
"""The warning in the log is repeated at most this often while the box stays overloaded."""


class RecordingPressure:
    """Shared by a box's recorders (who raise it) and analysers (who give way). Thread-safe: a
    float written and read whole."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._warned = -WARN_EVERY_S
        self.raised = 0
        """How often a recorder reported being behind (for /metrics and the benchmark)."""

    def recorder_behind(self) -> None:
        now = self._clock()
        self.raised += 1
        self._until = now + HOLD_S
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "the box is short of CPU: motion detection pauses to keep every camera recording; "
                "motion alerts may be late or missed. Record fewer cameras on this box, or lower the "
                "cameras' sub stream resolution or frame rate"
            )

    @property
    def active(self) -> bool:
        return self._clock() < self._until
