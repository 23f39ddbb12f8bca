"""The demo's SMS provider: the part of SMS.ru's HTTP API (sms.ru/api) that the portal's SMS.ru
client uses to send a guest's code, served on localhost.

`POST /sms/send` with `api_id`, `to`, `msg` and `json=1` answers as SMS.ru does (status 100 per
request and per number, or its error codes 200 wrong api_id, 202 bad number, 203 no text), and
hands each accepted message to `deliver` instead of a phone network. So the demo runs the
production client end to end; only the last hop, the operator, is replaced.

Nothing here logs: a message is a guest's one-time code.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

OK: Final = 100
NUMBER_DIGITS: Final = range(10, 16)
"""E.164 numbers without the plus: 10 to 15 digits."""

Deliver = Callable[[str, str], None]
"""(number as E.164 with the plus, text)."""


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"status": "ERROR", "status_code": code, "status_text": text})


class DemoSmsRu:
    """SMS.ru's `sms/send` for one API key; accepted messages go to `deliver`."""

    def __init__(self, api_id: str, deliver: Deliver) -> None:
        self._api_id = api_id.encode()
        self._deliver = deliver
        self._ids = itertools.count(1)

    async def send(self, request: web.Request) -> web.Response:
        fields = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not hmac.compare_digest(fields.get("api_id", "").encode(), self._api_id):
            return _error(200, "Неправильный api_id")
        if fields.get("json") != "1":
            return web.Response(status=400, text="the demo answers only json=1 requests, as the appliance sends them")
        text = fields.get("msg", "")
        if not text:
            return _error(203, "Нет текста сообщения")
        sms: dict[str, Any] = {}
        for to in fields.get("to", "").split(","):
            if not to.isdigit() or len(to) not in NUMBER_DIGITS:
                sms[to] = {"status": "ERROR", "status_code": 202, "status_text": "Неправильно указан номер"}
                continue
            self._deliver(f"+{to}", text)
            sms[to] = {"status": "OK", "status_code": OK, "sms_id": f"demo-{next(self._ids)}", "cost": 0.0}
        return web.json_response({"status": "OK", "status_code": OK, "sms": sms})

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.post("/sms/send")(self.send)
        return routes
