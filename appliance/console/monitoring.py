"""Machine-readable state: `/healthz` for readiness checks and `/metrics` for Prometheus.

Both are open without signing in (a scraper cannot fill in a login form) and live only on the
console's listener, which belongs on the staff network.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from appliance import __version__
from appliance.cameras.status import CameraState
from appliance.console.keys import BOARD, COMPONENTS
from appliance.supervisor import ComponentState

# Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

routes = web.RouteTableDef()


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())


Sample = tuple[dict[str, str], float]


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{{{_labels(labels)}}} {value!r}" for labels, value in samples]
    return lines


def render_metrics(request: web.Request) -> str:
    cameras = request.app[BOARD].all()
    components = request.app[COMPONENTS]()
    lines = _family("appliance_info", "gauge", "The running version.", [({"version": __version__}, 1)])
    lines += _family(
        "appliance_camera_info",
        "gauge",
        "Camera identifiers and the names people read.",
        [({"camera": c.camera_id, "name": c.name}, 1) for c in cameras],
    )
    lines += _family(
        "appliance_camera_up",
        "gauge",
        "1 while the camera's stream is received, else 0.",
        [({"camera": c.camera_id}, int(c.state is CameraState.ONLINE)) for c in cameras],
    )
    lines += _family(
        "appliance_camera_fps",
        "gauge",
        "Frames per second received from the camera.",
        [({"camera": c.camera_id}, c.fps) for c in cameras],
    )
    lines += _family(
        "appliance_camera_bitrate_kbps",
        "gauge",
        "Stream bit rate received from the camera.",
        [({"camera": c.camera_id}, c.bitrate_kbps) for c in cameras],
    )
    lines += _family(
        "appliance_component_up",
        "gauge",
        "1 while the daemon component is running, else 0.",
        [({"component": s.name}, int(s.state is ComponentState.RUNNING)) for s in components],
    )
    lines += _family(
        "appliance_component_restarts_total",
        "counter",
        "Restarts of the daemon component since the appliance started.",
        [({"component": s.name}, s.restarts) for s in components],
    )
    return "\n".join(lines) + "\n"


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=render_metrics(request).encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})
