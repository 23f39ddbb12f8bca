"""One HTTP client for the SMS providers with an HTTP API: timeouts, and the answers that are not
the provider's own (no network, a timeout, an HTTP error page) turned into `SmsError`.

Messages never contain the request: its address or body carries the API key and the code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from appliance.portal.sms.base import SmsError

MAX_ANSWER_BYTES: Final = 64 * 1024
"""Provider answers are a few hundred bytes; a bigger one is an error page, read only this far."""


class ProviderClient:
    """An aiohttp session for one provider, opened on first use (inside the running event loop)."""

    def __init__(self, label: str, *, connect_timeout_s: float, timeout_s: float) -> None:
        self.label = label
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """The answer's body for a 2xx status; SmsError for anything else."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        host = urlsplit(url).hostname or "?"
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                body = await resp.content.read(MAX_ANSWER_BYTES)
                status = resp.status
        except TimeoutError:
            raise SmsError(
                f"{self.label} ({host}) did not answer within {self._timeout.total:g} s; the guest can try again "
                "(if it keeps happening, check the appliance's internet connection)"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise SmsError(
                f"cannot reach {self.label} ({host}): {type(exc).__name__}; check the appliance's internet "
                "connection and DNS"
            ) from None
        except aiohttp.ClientError as exc:
            raise SmsError(f"{self.label} ({host}) answered badly: {type(exc).__name__}") from None
        if status >= 500 or status == 429:
            raise SmsError(f"{self.label} ({host}) is not working right now (HTTP {status}); the guest can try again")
        if status in (401, 403):
            raise SmsError(
                f"{self.label} ({host}) refused the credentials (HTTP {status}); check api_key / login / password "
                "in [portal.sms]",
                permanent=True,
            )
        if status >= 400:
            raise SmsError(
                f"{self.label} ({host}) refused the request (HTTP {status}); check base_url in [portal.sms]",
                permanent=True,
            )
        return body.decode("utf-8", errors="replace")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        # Let the connector's transports finish closing before the loop may end.
        await asyncio.sleep(0)

    def json_object(self, body: str) -> dict[str, Any]:
        """A provider's JSON answer; anything else means a proxy or an outage page answered."""
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise SmsError(f"{self.label} answered something that is not its JSON; the guest can try again")
        return doc
