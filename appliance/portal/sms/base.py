"""What an SMS provider (SMS.ru, SMSC.ru, a generic HTTP API, a Gammu spool) is to the portal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sent:
    provider_id: str | None
    """The provider's message id, kept with the identification record."""
    cost: float | None = None


@dataclass(frozen=True)
class CallCheck:
    """A call-based check: the guest proves the number by calling `call_number` (or, for a flash
    call, by typing the code the provider's caller id carries)."""

    check_id: str
    call_number: str | None = None


class SmsError(Exception):
    """The provider did not take the message. `permanent` means retrying cannot help (bad API key,
    number refused); the message is for staff and logs (never contains the code or the key)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SmsSender(Protocol):
    name: str

    async def send(self, phone_e164: str, text: str) -> Sent:
        """Send `text` (which carries the one-time code) or raise SmsError."""
        ...

    async def close(self) -> None: ...
