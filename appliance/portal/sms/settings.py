"""`[portal.sms]`: the SMS provider that sends guests their one-time codes."""

from __future__ import annotations

from appliance.settings_base import StrictModel


class SmsSettings(StrictModel):
    pass
