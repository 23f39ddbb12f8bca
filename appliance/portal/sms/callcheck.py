"""A check by phone call instead of an SMS, for providers that offer one (SMS.ru's callcheck).

The guest calls the number the provider gives; the provider hangs up (the call is free) and marks
the check confirmed. The portal asks `check_status` until it is confirmed or expired.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from appliance.portal.sms.base import CallCheck


class CallStatus(StrEnum):
    PENDING = "pending"
    """No call from the guest's number yet."""
    CONFIRMED = "confirmed"
    """The guest called from the number: it is theirs."""
    EXPIRED = "expired"
    """Too late (the provider's window is 5 minutes for SMS.ru) or the check is unknown."""


@runtime_checkable
class CallChecker(Protocol):
    """What a sender that can check by call also has (`isinstance(sender, CallChecker)`)."""

    async def call_check(self, phone_e164: str) -> CallCheck:
        """Start a check; the guest must call `CallCheck.call_number` from `phone_e164`. Raises SmsError."""
        ...

    async def check_status(self, check_id: str) -> CallStatus:
        """Where a check stands. Raises SmsError when the provider cannot be asked."""
        ...
