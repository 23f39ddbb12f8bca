"""What the guest Wi-Fi publishes on the event bus (appliance/bus.py) for the alert dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class SmsBudgetReached:
    """The day's SMS budget is spent: guests can no longer get codes until the next day (store time)."""

    day: date
    """The store's local date the budget belongs to."""
    sent: int
    budget: int
    at_utc: datetime
