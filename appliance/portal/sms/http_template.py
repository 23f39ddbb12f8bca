"""Any SMS gateway with an HTTP API, described in `[portal.sms.http]` by a request template.

Placeholders are escaped for where they land (URL-encoded in the address and in a form body,
JSON-escaped in a JSON body), so a message with `&`, quotes or Cyrillic letters cannot break
the request or add fields to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

from appliance.portal.sms.base import Sent, SmsError
from appliance.portal.sms.http_client import ProviderClient
from appliance.portal.sms.settings import TEMPLATE_FIELD, HttpTemplateSettings

CONTENT_TYPES: Final = {
    "form": "application/x-www-form-urlencoded",
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
}
Escape = Callable[[str], str]
ESCAPES: Final[dict[str, Escape]] = {
    "url": lambda v: quote(v, safe=""),
    "form": lambda v: quote(v, safe=""),
    "json": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "text": lambda v: v,
    "header": lambda v: v,
}


def fill(template: str, values: dict[str, str], escape: Escape) -> str:
    """The template with every known `{placeholder}` replaced by its escaped value."""
    return TEMPLATE_FIELD.sub(lambda m: escape(values[m.group(1)]), template)


class HttpTemplateSender:
    name = "http"

    def __init__(
        self,
        settings: HttpTemplateSettings,
        client: ProviderClient,
        *,
        api_key: str | None = None,
        sender: str | None = None,
    ) -> None:
        self._t = settings
        self._client = client
        self._fixed = {"api_key": api_key or "", "sender": sender or ""}
        self._success = re.compile(settings.success_pattern) if settings.success_pattern else None
        self._id = re.compile(settings.id_pattern) if settings.id_pattern else None

    async def send(self, phone_e164: str, text: str) -> Sent:
        values = {**self._fixed, "phone": phone_e164, "phone_digits": phone_e164.lstrip("+"), "text": text}
        headers = {name: fill(value, values, ESCAPES["header"]) for name, value in self._t.headers.items()}
        body: str | None = None
        if self._t.method == "POST":
            body = fill(self._t.body, values, ESCAPES[self._t.body_type])
            headers.setdefault("Content-Type", CONTENT_TYPES[self._t.body_type])
        answer = await self._client.request(
            self._t.method, fill(self._t.url, values, ESCAPES["url"]), data=body, headers=headers
        )
        if self._success is not None and not self._success.search(answer):
            # The gateway's own words may echo the message (and its code): they are not repeated.
            raise SmsError(
                "the SMS gateway answered, but not with success_pattern of [portal.sms.http]; check its account "
                "and the pattern"
            )
        match = self._id.search(answer) if self._id is not None else None
        return Sent(provider_id=match.group(1) if match and match.groups() else None)

    async def close(self) -> None:
        await self._client.close()
