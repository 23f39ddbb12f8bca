"""A stand-in for SMS.ru's HTTP API (sms.ru/api), for the tests: the portal's real SMS.ru client
talks to it over HTTP.

What it speaks, as documented by SMS.ru (GET or POST, `json=1`):
- /sms/send (api_id, to, msg, from): {"status": "OK", "status_code": 100, "sms": {"7999…":
  {"status": "OK", "status_code": 100, "sms_id": "…"}}, "balance": …}; errors 200 (wrong
  api_id), 201 (no money), 202/207 (number), 203 (no text), 204 (sender not approved),
  220 (temporarily unavailable), per request or per number.
- /my/balance: {"status": "OK", "status_code": 100, "balance": …}
- /callcheck/add (phone): {"status": "OK", "status_code": 100, "check_id", "call_phone",
  "call_phone_pretty", "call_phone_html"}; /callcheck/status (check_id): "check_status" 400
  (waiting), 401 (confirmed), 402 (expired or unknown). `confirm_call(number)` is the guest
  calling.

Run alone (another network namespace): python -m tests.peers.smsru_standin PORT API_ID
"""

from __future__ import annotations

import secrets
import sys
from typing import Any, Final

from aiohttp import web

from tests.peers.sms_standin import Message, StandIn, e164, serve_forever

DEFAULT_API_ID: Final = "A3CA597E-3ACF-4E7D-82EE-CF82B52B1A8B"
PRICE: Final = 4.35
CALL_NUMBER: Final = "78005008275"
NUMBER_DIGITS: Final = range(10, 16)


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"status": "ERROR", "status_code": code, "status_text": text})


class SmsRuStandIn(StandIn):
    def __init__(
        self,
        api_id: str = DEFAULT_API_ID,
        *,
        balance: float = 100.0,
        senders: tuple[str, ...] = ("SMS Aero", "Magazin"),
        refused: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.api_id = api_id
        self.balance = balance
        self.senders = senders
        self.refused = {e164(n) for n in refused}
        self.checks: dict[str, tuple[str, int]] = {}
        """check_id -> (number, check_status)."""

    def sms_config(self, **overrides: Any) -> dict[str, Any]:
        """A `[portal.sms]` section that points the appliance at this stand-in."""
        return {"provider": "smsru", "api_key": self.api_id, "base_url": self.url, **overrides}

    def confirm_call(self, number: str) -> None:
        """The guest calls from `number`: its pending checks are confirmed."""
        for check_id, (caller, status) in self.checks.items():
            if caller == e164(number) and status == 400:
                self.checks[check_id] = (caller, 401)

    def expire_checks(self) -> None:
        self.checks = {k: (n, 402 if s == 400 else s) for k, (n, s) in self.checks.items()}

    async def _guard(self, request: web.Request) -> tuple[dict[str, str], web.Response | None]:
        forced = await self.failure()
        if forced is not None:
            return {}, forced
        fields = await self.fields(request)
        if self.mode == "busy":
            return fields, _error(220, "Сервис временно недоступен, попробуйте чуть позже.")
        if not secrets.compare_digest(fields.get("api_id", "").encode(), self.api_id.encode()):
            return fields, _error(200, "Неправильный api_id")
        if fields.get("json") != "1":
            # Without json=1 SMS.ru answers in plain lines, which no JSON client can read.
            return fields, web.Response(text="100\n")
        return fields, None

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.route("*", "/sms/send")
        async def send(request: web.Request) -> web.Response:
            fields, refused = await self._guard(request)
            if refused is not None:
                return refused
            text, sender = fields.get("msg", ""), fields.get("from") or None
            if not text:
                return _error(203, "Нет текста сообщения")
            if sender is not None and sender not in self.senders:
                return _error(204, "Имя отправителя не согласовано с администрацией")
            if self.balance < PRICE:
                return _error(201, "Не хватает средств на лицевом счету")
            sms: dict[str, Any] = {}
            for to in fields.get("to", "").split(","):
                if not to.isdigit() or len(to) not in NUMBER_DIGITS:
                    sms[to] = {"status": "ERROR", "status_code": 202, "status_text": "Неправильно указан номер"}
                elif e164(to) in self.refused:
                    sms[to] = {
                        "status": "ERROR",
                        "status_code": 207,
                        "status_text": "На этот номер нельзя отправлять сообщения",
                    }
                else:
                    sms_id = f"{self.next_id():06d}-{secrets.randbelow(10**7):07d}"
                    self.balance = round(self.balance - PRICE, 2)
                    self.messages.append(Message(e164(to), text, sender, sms_id))
                    sms[to] = {"status": "OK", "status_code": 100, "sms_id": sms_id, "cost": PRICE}
            return web.json_response({"status": "OK", "status_code": 100, "sms": sms, "balance": self.balance})

        @routes.route("*", "/my/balance")
        async def balance(request: web.Request) -> web.Response:
            _, refused = await self._guard(request)
            if refused is not None:
                return refused
            return web.json_response({"status": "OK", "status_code": 100, "balance": self.balance})

        @routes.route("*", "/callcheck/add")
        async def callcheck_add(request: web.Request) -> web.Response:
            fields, refused = await self._guard(request)
            if refused is not None:
                return refused
            phone = fields.get("phone", "")
            if not phone.isdigit() or len(phone) not in NUMBER_DIGITS:
                return _error(202, "Неправильно указан номер")
            check_id = f"{self.next_id():06d}-{secrets.randbelow(10**7):07d}"
            self.checks[check_id] = (e164(phone), 400)
            return web.json_response(
                {
                    "status": "OK",
                    "status_code": 100,
                    "check_id": check_id,
                    "call_phone": CALL_NUMBER,
                    "call_phone_pretty": "+7 (800) 500-8275",
                    "call_phone_html": f"<a href='callto:{CALL_NUMBER}'>+7 (800) 500-8275</a>",
                }
            )

        @routes.route("*", "/callcheck/status")
        async def callcheck_status(request: web.Request) -> web.Response:
            fields, refused = await self._guard(request)
            if refused is not None:
                return refused
            _, status = self.checks.get(fields.get("check_id", ""), ("", 402))
            texts = {400: "Номер пока не подтвержден", 401: "Номер подтвержден", 402: "Истекло время"}
            return web.json_response(
                {"status": "OK", "status_code": 100, "check_status": status, "check_status_text": texts[status]}
            )

        return routes


if __name__ == "__main__":
    serve_forever(SmsRuStandIn(sys.argv[2] if len(sys.argv) > 2 else DEFAULT_API_ID), int(sys.argv[1]))
