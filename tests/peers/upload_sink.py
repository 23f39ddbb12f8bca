"""An HTTP server that takes uploads and answers how many bytes it got, for upload tests.

    python -m tests.peers.upload_sink PORT

Prints "ready" once it listens (every address, IPv4 and IPv6).
"""

from __future__ import annotations

import sys

from aiohttp import web

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


async def sink(request: web.Request) -> web.Response:
    return web.Response(text=f"{len(await request.read())}\n")


if __name__ == "__main__":
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app.router.add_post("/", sink)
    web.run_app(app, port=int(sys.argv[1]), print=lambda *_: print("ready", flush=True), access_log=None)
