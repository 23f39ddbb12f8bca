"""The `[alerts]` section of the configuration file."""

from __future__ import annotations

from appliance.settings_base import StrictModel


class AlertsSection(StrictModel):
    pass
