"""Request body limits per route.

aiohttp has one body limit per application (`client_max_size`), so an application with one form
that uploads megabytes (a promotion's picture) would take megabytes on every route, the public
sign-in form included, before anyone has signed in. The application is built with the largest
limit its routes need; this middleware holds every other route to the small one. A body
announced bigger than its route's limit is refused before any of it is read.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

RouteHandler = Handler | type[web.View]


def body_limit_middleware(default_bytes: int, larger: Mapping[RouteHandler, int]) -> Middleware:
    """`larger`: route handlers allowed more than `default_bytes`, and how much."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = larger.get(request.match_info.handler, default_bytes)
        size = request.content_length
        if size is not None and size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        if limit != request.client_max_size:
            request = request.clone(client_max_size=limit)
        return await handler(request)

    return middleware
