#!/usr/bin/python3
"""A real third-party RTSP camera for the tests: GStreamer's RTSP server (Debian packages).

Runs under Debian's /usr/bin/python3 (the gi bindings are not in the venv).
Usage: gst_rtsp_server.py PORT [USER PASSWORD]. Serves /main (1280x720), /sub (640x360),
both H.264 at 15 fps, the same in H.265 as /main265 and /sub265 (encoded only while played),
and prints "ready PORT" when listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)

if len(sys.argv) >= 4:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[2], sys.argv[3]), token)
    server.set_auth(auth)

mounts = server.get_mount_points()


ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96",
    # Parameter sets before every keyframe, as cameras send them.
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}


def add(path: str, width: int, height: int, codec: str = "h264") -> None:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc pattern=ball is-live=true ! video/x-raw,width={width},height={height},framerate=15/1 "
        f"! {ENCODERS[codec]} )"
    )
    factory.set_shared(True)
    if len(sys.argv) >= 4:
        permissions = GstRtspServer.RTSPPermissions()
        for perm in (
            GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS,
            GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
        ):
            permissions.add_permission_for_role("user", perm, True)
        factory.set_permissions(permissions)
    mounts.add_factory(path, factory)


add("/main", 1280, 720)
add("/sub", 640, 360)
add("/main265", 1280, 720, "h265")
add("/sub265", 640, 360, "h265")
server.attach(None)
print("ready", port, flush=True)
GLib.MainLoop().run()
