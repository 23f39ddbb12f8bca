"""SMSC.ru's HTTP API (smsc.ru/api/http): `sys/send.php` with `fmt=3` (JSON answers).

A sent message answers `{"id": N, "cnt": parts}`; a refused one `{"error": "...", "error_code": N}`.
Authentication is `login` + `psw`, or an `apikey`. Requests are POSTed (the key and the code stay
out of addresses) with `charset=utf-8` (SMSC.ru's default is windows-1251).
"""

from __future__ import annotations

from typing import Final

from appliance.portal.sms.base import Sent, SmsError
from appliance.portal.sms.http_client import ProviderClient

TRANSIENT_CODES: Final = frozenset({4, 9})
"""4: the address is blocked for a while after many errors; 9: the same request repeated or too many at once."""

_FIXES: Final[dict[int, str]] = {
    1: "SMSC.ru found an error in the request's parameters; check [portal.sms] (sender, base_url)",
    2: "SMSC.ru refused the login and password (or the API key); check login / password / api_key in [portal.sms]",
    3: "the SMSC.ru balance is used up; top up the account at smsc.ru",
    5: "SMSC.ru refused the request's date format",
    6: "SMSC.ru forbade the message (its text or the sender name); clear [portal.sms] sender or register the name",
    7: "SMSC.ru says the number is not a valid phone number",
    8: "SMSC.ru cannot deliver to this number",
}


def smsc_error(code: int, provider_text: str) -> SmsError:
    if code in TRANSIENT_CODES:
        return SmsError(f"SMSC.ru asks to wait before sending more (code {code}); the guest can try again shortly")
    fix = _FIXES.get(code)
    if fix is not None:
        return SmsError(f"{fix} (code {code})", permanent=True)
    return SmsError(f"SMSC.ru refused the message (code {code}: {provider_text[:200]})", permanent=True)


class SmscSender:
    name = "smsc"

    def __init__(
        self,
        client: ProviderClient,
        *,
        base_url: str,
        api_key: str | None = None,
        login: str | None = None,
        password: str | None = None,
        sender: str | None = None,
    ) -> None:
        if api_key is None and (login is None or password is None):
            raise ValueError("SMSC.ru needs an API key or a login and password")
        self._auth = {"apikey": api_key} if api_key is not None else {"login": login or "", "psw": password or ""}
        self._client = client
        self._base = base_url.rstrip("/")
        self._sender = sender

    async def send(self, phone_e164: str, text: str) -> Sent:
        # With the plus sign SMSC.ru sends to the number as given instead of "correcting" it.
        fields = {**self._auth, "phones": phone_e164, "mes": text, "fmt": "3", "charset": "utf-8"}
        if self._sender:
            fields["sender"] = self._sender
        doc = self._client.json_object(await self._client.request("POST", f"{self._base}/sys/send.php", data=fields))
        if "error_code" in doc or "error" in doc:
            try:
                code = int(doc.get("error_code", -1))
            except (TypeError, ValueError):
                code = -1
            raise smsc_error(code, str(doc.get("error", "")))
        if "id" not in doc:
            raise SmsError("SMSC.ru answered without a message id; the guest can try again")
        cost = doc.get("cost")
        return Sent(provider_id=str(doc["id"]), cost=float(cost) if cost is not None else None)

    async def close(self) -> None:
        await self._client.close()
