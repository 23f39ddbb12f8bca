#!/usr/bin/python3
"""A real third-party RTSP camera serving a prepared MP4 clip (GStreamer's RTSP server).

Runs under Debian's /usr/bin/python3 (the gi bindings are not in the venv).
Usage: gst_file_camera.py PORT FILE h264|h265. Serves the clip's video once per client at
rtsp://127.0.0.1:PORT/file, in real time, and prints "ready PORT" when listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path, codec = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# config-interval=-1: parameter sets before every keyframe, as cameras send them.
factory.set_launch(
    f'( filesrc location="{path}" ! qtdemux ! {codec}parse config-interval=-1 '
    f"! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
)
server.get_mount_points().add_factory("/file", factory)
server.attach(None)
print("ready", port, flush=True)
GLib.MainLoop().run()
