"""A stand-in for SMSC.ru's HTTP API (smsc.ru/api/http), for the tests: the portal's real SMSC.ru
client talks to it over HTTP.

What it speaks, as documented by SMSC.ru: /sys/send.php (GET or POST) with login + psw or
apikey, phones, mes, sender, charset and fmt=3 (JSON): {"id": N, "cnt": parts} for a sent
message, {"error": "…", "error_code": N} for a refused one (1 parameters, 2 login/password,
3 no money, 6 forbidden sender, 7 bad number, 9 too many identical requests).

Run alone (another network namespace): python -m tests.peers.smsc_standin PORT LOGIN PASSWORD
"""

from __future__ import annotations

import secrets
import sys
from typing import Any, Final

from aiohttp import web

from tests.peers.sms_standin import Message, StandIn, e164, serve_forever

DEFAULT_LOGIN: Final = "magazin"
DEFAULT_PASSWORD: Final = "Pa55-smsc-word"
PRICE: Final = 3.9


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"error": text, "error_code": code})


def _same(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and secrets.compare_digest(given.encode(), expected.encode())


class SmscStandIn(StandIn):
    def __init__(
        self,
        login: str = DEFAULT_LOGIN,
        password: str = DEFAULT_PASSWORD,
        *,
        api_key: str | None = None,
        balance: float = 100.0,
        senders: tuple[str, ...] = ("SMSC.RU", "Magazin"),
    ) -> None:
        super().__init__()
        self.login, self.password, self.api_key = login, password, api_key
        self.balance = balance
        self.senders = senders
        self.charsets: list[str] = []

    def sms_config(self, **overrides: Any) -> dict[str, Any]:
        """A `[portal.sms]` section that points the appliance at this stand-in."""
        return {"provider": "smsc", "login": self.login, "password": self.password, "base_url": self.url, **overrides}

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.route("*", "/sys/send.php")
        async def send(request: web.Request) -> web.Response:
            forced = await self.failure()
            if forced is not None:
                return forced
            fields = await self.fields(request)
            if self.mode == "busy":
                return _error(9, "duplicate request, wait a minute")
            signed_in = _same(fields.get("apikey"), self.api_key) or (
                fields.get("login") == self.login and _same(fields.get("psw"), self.password)
            )
            if not signed_in:
                return _error(2, "authorise error")
            phone, text, sender = fields.get("phones", ""), fields.get("mes", ""), fields.get("sender") or None
            if not text or fields.get("fmt") != "3":
                return _error(1, "parameters error")
            if sender is not None and sender not in self.senders:
                return _error(6, "message is denied")
            digits = phone.lstrip("+")
            if "," in phone or not digits.isdigit() or not 10 <= len(digits) <= 15:
                return _error(7, "invalid number")
            if self.balance < PRICE:
                return _error(3, "no money")
            self.balance = round(self.balance - PRICE, 2)
            self.charsets.append(fields.get("charset", "windows-1251"))
            message_id = self.next_id()
            self.messages.append(Message(e164(phone), text, sender, str(message_id)))
            return web.json_response({"id": message_id, "cnt": 1})

        return routes


if __name__ == "__main__":
    login, password = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (DEFAULT_LOGIN, DEFAULT_PASSWORD)
    serve_forever(SmscStandIn(login, password), int(sys.argv[1]))
