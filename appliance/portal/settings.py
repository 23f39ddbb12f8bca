"""`[portal.login]`: how guests identify themselves on the guest Wi-Fi (Decree 758)."""

from __future__ import annotations

from appliance.settings_base import StrictModel


class LoginSettings(StrictModel):
    pass
