"""SMS.ru's HTTP API (sms.ru/api): `sms/send`, `my/balance`, and the call check `callcheck/add` /
`callcheck/status`, all with `json=1`.

Requests are POSTed, so the API key and the code never sit in an address a proxy might log.
Every answer carries `status` ("OK"/"ERROR") and `status_code` (100 is success); `sms/send` has
the same pair per number. The codes are sorted here into what retrying may cure (the service is
down) and what only the owner can fix (key, balance, sender name, limits) or nobody can (the
number is refused).
"""

from __future__ import annotations

from typing import Any, Final

from appliance.portal.sms.base import CallCheck, Sent, SmsError
from appliance.portal.sms.callcheck import CallStatus
from appliance.portal.sms.http_client import ProviderClient

OK: Final = 100
TRANSIENT_CODES: Final = frozenset({220, 500})
"""The service is temporarily unavailable / its own error."""

_FIXES: Final[dict[int, str]] = {
    200: "SMS.ru does not know the API key; copy the api_id from your SMS.ru account into [portal.sms] api_key",
    300: "SMS.ru refused the API key; copy the api_id from your SMS.ru account into [portal.sms] api_key",
    301: "SMS.ru refused the API key; copy the api_id from your SMS.ru account into [portal.sms] api_key",
    302: "the SMS.ru account is not confirmed yet; finish the registration at sms.ru",
    201: "the SMS.ru balance is used up; top up the account at sms.ru",
    204: "SMS.ru has not approved the sender name; clear [portal.sms] sender or get the name approved at sms.ru",
    206: "the daily limit of the SMS.ru account is reached; raise it in the account settings at sms.ru",
    202: "SMS.ru cannot send to this number",
    207: "SMS.ru cannot send to this number",
    209: "this number is on the SMS.ru stop list",
    230: "SMS.ru refuses more messages to this number today",
    231: "SMS.ru refuses more messages to this number for a minute",
    232: "SMS.ru refuses more messages to this number today",
    233: "SMS.ru refuses more codes to this number for now",
}

CALL_STATES: Final = {400: CallStatus.PENDING, 401: CallStatus.CONFIRMED, 402: CallStatus.EXPIRED}


def smsru_error(code: int, provider_text: str) -> SmsError:
    """The error for an SMS.ru status code, with what to do about it."""
    if code in TRANSIENT_CODES:
        return SmsError(f"SMS.ru is temporarily unavailable (code {code}); the guest can try again")
    fix = _FIXES.get(code)
    if fix is not None:
        return SmsError(f"{fix} (code {code})", permanent=True)
    # Unknown codes: SMS.ru's own words (they never echo the key or the text), and no retry.
    return SmsError(f"SMS.ru refused the request (code {code}: {provider_text[:200]})", permanent=True)


def _code(doc: dict[str, Any]) -> int:
    try:
        return int(doc.get("status_code", -1))
    except (TypeError, ValueError):
        return -1


class SmsRuSender:
    name = "smsru"

    def __init__(self, api_key: str, client: ProviderClient, *, base_url: str, sender: str | None = None) -> None:
        self._api_key = api_key
        self._client = client
        self._base = base_url.rstrip("/")
        self._sender = sender

    async def _call(self, method: str, fields: dict[str, str]) -> dict[str, Any]:
        body = await self._client.request(
            "POST", f"{self._base}/{method}", data={"api_id": self._api_key, "json": "1", **fields}
        )
        doc = self._client.json_object(body)
        if doc.get("status") != "OK" or _code(doc) != OK:
            raise smsru_error(_code(doc), str(doc.get("status_text", "")))
        return doc

    async def send(self, phone_e164: str, text: str) -> Sent:
        to = phone_e164.lstrip("+")
        fields = {"to": to, "msg": text}
        if self._sender:
            fields["from"] = self._sender
        doc = await self._call("sms/send", fields)
        entry = (doc.get("sms") or {}).get(to)
        if not isinstance(entry, dict):
            raise SmsError("SMS.ru accepted the request but said nothing about the number; the guest can try again")
        if entry.get("status") != "OK" or _code(entry) != OK:
            raise smsru_error(_code(entry), str(entry.get("status_text", "")))
        cost = entry.get("cost")
        return Sent(provider_id=str(entry.get("sms_id") or "") or None, cost=float(cost) if cost is not None else None)

    async def balance(self) -> float:
        """The account's balance in roubles (for the owner's health view)."""
        doc = await self._call("my/balance", {})
        try:
            return float(doc["balance"])
        except (KeyError, TypeError, ValueError):
            raise SmsError("SMS.ru did not say the balance; try again later") from None

    async def call_check(self, phone_e164: str) -> CallCheck:
        doc = await self._call("callcheck/add", {"phone": phone_e164.lstrip("+")})
        check_id, number = doc.get("check_id"), doc.get("call_phone")
        if not check_id or not number:
            raise SmsError("SMS.ru started no call check; the guest can try again or use an SMS code")
        return CallCheck(check_id=str(check_id), call_number=f"+{str(number).lstrip('+')}")

    async def check_status(self, check_id: str) -> CallStatus:
        doc = await self._call("callcheck/status", {"check_id": check_id})
        try:
            return CALL_STATES[int(doc.get("check_status", -1))]
        except (KeyError, TypeError, ValueError):
            raise SmsError("SMS.ru gave an unknown call check status; the guest can try again") from None

    async def close(self) -> None:
        await self._client.close()
