"""A section of the staff console that another package brings (alert channels, guest Wi-Fi).

The console knows nothing of alerts or guests: the daemon hands it the features the other
packages built, each with its routes, its messages in both languages and its menu entries.
Their templates live in appliance/console/templates/ beside the console's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from appliance.web.i18n import Catalogue


@dataclass(frozen=True)
class NavLink:
    path: str
    label_key: str
    """A key of the feature's own `messages`."""


@dataclass(frozen=True)
class ConsoleFeature:
    name: str
    routes: web.RouteTableDef
    messages: Catalogue
    nav: tuple[NavLink, ...] = ()
    setup: Callable[[web.Application], None] | None = None
    """Puts what the routes need (stores, services) under the feature's own app keys."""
    max_body_bytes: int = 0
    """Largest request its forms send (an image upload); the console accepts the largest of these."""
