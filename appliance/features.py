"""What a package of the appliance (alerts, guest Wi-Fi) hands the daemon once built from the config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from appliance.console.features import ConsoleFeature
from appliance.supervisor import StopStage

Component = Callable[[], Awaitable[None]]


@dataclass
class Built:
    components: list[tuple[str, Component, StopStage]] = field(default_factory=list)
    """Supervised tasks, each stopped at its stage on shutdown."""
    console: list[ConsoleFeature] = field(default_factory=list)
    """Sections this package adds to the staff console."""
