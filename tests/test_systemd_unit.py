"""systemd/appliance.service: systemd accepts it, it carries the hardening the issue asks for, it
agrees with the daemon's own settings, and its MemoryDenyWriteExecute= does not break the
native libraries the daemon uses."""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.cli import DEFAULT_CONFIG, EXIT_USAGE
from appliance.config import ApplianceSection, DaemonSection

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD_DIR / "appliance.service"
SYSUSERS = SYSTEMD_DIR / "appliance.sysusers.conf"
EXEC = "/opt/appliance/.venv/bin/appliance"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
}
GATEWAY_CAPS = {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {n} is neither a section nor KEY=VALUE: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, str]:
    """The [Service] section, one value per key (a repeated key would be a mistake here)."""
    parsed = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    repeated = [k for k, v in parsed.items() if len(v) > 1]
    assert not repeated, f"keys given more than once: {repeated}"
    return {k: v[0] for k, v in parsed.items()}


def test_notify_watchdog_and_restart(service: dict[str, str]) -> None:
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "5"
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == str(EXIT_USAGE)


def test_stop_timeout_leaves_room_for_the_daemons_own_shutdown(service: dict[str, str]) -> None:
    longest_shutdown = next(m.le for m in DaemonSection.model_fields["shutdown_timeout_s"].metadata if hasattr(m, "le"))
    assert float(service["TimeoutStopSec"]) >= longest_shutdown + 5


def test_paths_agree_with_the_cli_and_config_defaults(service: dict[str, str]) -> None:
    assert service["ExecStart"] == f"{EXEC} run --config {DEFAULT_CONFIG}"
    data_dir = ApplianceSection().data_dir
    assert data_dir == Path("/var/lib") / service["StateDirectory"]
    assert str(data_dir) in service["ReadWritePaths"].split()
    assert service["User"] == service["Group"] == "appliance"


def test_hardening(service: dict[str, str]) -> None:
    assert {k: service.get(k) for k in HARDENING} == HARDENING
    assert set(service["CapabilityBoundingSet"].split()) == GATEWAY_CAPS
    assert set(service["AmbientCapabilities"].split()) == GATEWAY_CAPS
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_every_hardening_line_says_why() -> None:
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    keys = {
        *HARDENING,
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "RestrictAddressFamilies",
        "ReadWritePaths",
        "NotifyAccess",
        "WatchdogSec",
        "TimeoutStopSec",
    }
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0]
        if key not in keys:
            continue
        j = i - 1  # walk up through the block of settings this line belongs to
        while j >= 0 and lines[j] and not lines[j].startswith("#"):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"{key}= has no comment saying why it is there"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); the unit was not verified")
    return tool


def _verify(tool: str, unit: Path) -> tuple[int, list[str]]:
    run = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    return run.returncode, (run.stdout + run.stderr).splitlines()


def _copy_with_exec(tmp_path: Path, text: str) -> Path:
    """A copy whose ExecStart names an executable that exists here (the venv's python), so that
    verify checks everything else; the file keeps its name, which verify also checks."""
    assert EXEC in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(EXEC, sys.executable), encoding="utf-8")
    return copy


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    tool = _analyze()
    rc, output = _verify(tool, _copy_with_exec(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert (rc, output) == (0, [])


def test_systemd_analyze_verify_on_the_file_as_shipped() -> None:
    tool = _analyze()
    rc, output = _verify(tool, UNIT)
    if Path(EXEC).exists():
        assert (rc, output) == (0, [])
    else:
        # Not installed on this machine: the missing program is the only complaint allowed.
        assert output == [f"{UNIT.name}: Command {EXEC} is not executable: No such file or directory"]


def test_verify_reports_a_mistake(tmp_path: Path) -> None:
    """The clean result above means something: the same check catches a misspelt hardening key."""
    tool = _analyze()
    broken = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSystm=strict")
    _, output = _verify(tool, _copy_with_exec(tmp_path, broken))
    assert any("Unknown key 'ProtectSystm'" in line for line in output), output


def test_sysusers_creates_the_service_account(tmp_path: Path, service: dict[str, str]) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers is not installed; appliance.sysusers.conf was not checked")
    (tmp_path / "etc").mkdir()
    run = subprocess.run(
        [tool, f"--root={tmp_path}", "--dry-run", str(SYSUSERS)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    assert re.search(rf"Creating user '{service['User']}' \(Store appliance daemon\)", output), output
    assert f"Creating group '{service['Group']}'" in output
    assert "ignoring" not in output and "Failed" not in output, output


# systemd 252's MemoryDenyWriteExecute= as seccomp rules (src/shared/seccomp-util.c): no mapping
# both writable and executable, no mprotect() to executable, no executable shared memory.
_MDWE_FILTER = """
import ctypes, ctypes.util, mmap, sys
lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, EPERM, MASKED_EQ = 0x7FFF0000, 0x00050000 | 1, 7
ctx = lib.seccomp_init(ALLOW)
for name, mask in (("mmap", 0x6), ("mprotect", 0x4), ("pkey_mprotect", 0x4), ("shmat", 0o100000)):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    assert lib.seccomp_rule_add_array(ctx, EPERM, nr, 1, ctypes.byref(Cmp(2, MASKED_EQ, mask, mask))) == 0
assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
assert lib.seccomp_load(ctx) == 0
try:  # the filter must bite, or a passing workload proves nothing
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("the seccomp filter is not active")
except PermissionError:
    pass
"""

# What the daemon does with native code: decode and analyse H.264, remux, hash passwords, sign,
# serve HTTP, use SQLite, and ctypes callbacks (libffi closures, a classic W+X user).
_WORKLOAD = """
import asyncio, ctypes, io
import av, cv2, numpy as np
as_int = lambda p: ctypes.cast(p, ctypes.POINTER(ctypes.c_int))[0]
cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda a, b: as_int(a) - as_int(b))
arr = (ctypes.c_int * 3)(3, 1, 2)
ctypes.CDLL(None).qsort(arr, 3, ctypes.sizeof(ctypes.c_int), cb)
assert list(arr) == [1, 2, 3]
codec = next(c for c in ("libx264", "libopenh264", "mpeg4") if c in av.codecs_available)
clip = io.BytesIO()
with av.open(clip, "w", format="mp4") as out:
    stream = out.add_stream(codec, rate=10)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    for i in range(20):
        img = np.zeros((240, 320, 3), np.uint8)
        cv2.rectangle(img, (i * 10, 40), (i * 10 + 60, 160), (255, 255, 255), -1)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
    out.mux(stream.encode())
clip.seek(0)
previous, moving = None, 0
with av.open(clip) as inp:
    inp.streams.video[0].thread_type = "AUTO"
    for frame in inp.decode(video=0):
        for how in ("FAST_BILINEAR", "BILINEAR", "BICUBIC", "AREA"):
            frame.reformat(width=160, height=120, format="yuv420p", interpolation=how)
        small = cv2.GaussianBlur(cv2.resize(frame.to_ndarray(format="gray"), (80, 60)), (5, 5), 0)
        if previous is not None:
            mask = cv2.threshold(cv2.absdiff(small, previous), 25, 255, cv2.THRESH_BINARY)[1]
            moving += len(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0])
        previous = small
assert moving > 0 and cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"))[0]
clip.seek(0)
with av.open(clip) as inp, av.open(io.BytesIO(), "w", format="mp4") as out:
    copy = out.add_stream_from_template(inp.streams.video[0])
    for packet in inp.demux(video=0):
        if packet.dts is not None:
            packet.stream = copy
            out.mux(packet)
import argon2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash("pw")
key = Ed25519PrivateKey.generate()
key.public_key().verify(key.sign(b"clip"), b"clip")
import sqlalchemy as sa
from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import create_async_engine
async def main():
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as r:
        assert await r.text() == "ok"
    await runner.cleanup()
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        assert (await conn.execute(sa.text("select 1"))).scalar() == 1
    await engine.dispose()
asyncio.run(main())
print("workload ok")
"""


@pytest.mark.slow
def test_native_libraries_run_under_memory_deny_write_execute() -> None:
    if sys.platform != "linux" or ctypes.util.find_library("seccomp") is None:
        pytest.skip("needs Linux with libseccomp (apt-get install libseccomp2) to apply the filter")
    script = textwrap.dedent(_MDWE_FILTER) + textwrap.dedent(_WORKLOAD)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "workload ok"


_GATEWAY_SCRIPT = """
set -e
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys   # ProtectKernelTunables=yes
ip link set lo up
exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \\
    --inh-caps=-all,{caps} --ambient-caps=-all,{caps} --bounding-set=-all,{caps} -- sh -c '
  set -e
  nft add table inet guest
  nft add set inet guest allowed "{{ type ether_addr . ipv4_addr; flags timeout; }}"
  nft add chain inet guest pre "{{ type nat hook prerouting priority dstnat; }}"
  nft add rule inet guest pre ether saddr . ip saddr != @allowed tcp dport 80 redirect to :8081
  nft add element inet guest allowed "{{ 02:00:00:00:00:01 . 10.99.0.2 timeout 1h }}"
  nft delete element inet guest allowed "{{ 02:00:00:00:00:01 . 10.99.0.2 }}"
  {python} -c "import socket; socket.socket().bind((\\"127.0.0.1\\", 80)); print(\\"gateway ok\\")"
'
"""


def test_the_units_capabilities_are_enough_for_the_gateway(service: dict[str, str]) -> None:
    """As the unit runs it (an unprivileged user holding only the unit's capabilities, no new
    privileges, /proc/sys read-only), nftables rules and sets can be managed and port 80 bound."""
    tools = ("unshare", "setpriv", "nft", "ip")
    missing = [t for t in tools if shutil.which(t) is None]
    # The service user cannot run a Python kept under root's home (pyenv): use the system's.
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if missing or system_python is None:
        pytest.skip(
            f"needs {', '.join(missing) or 'a system python3'} (apt-get install nftables iproute2 util-linux python3)"
        )
    if os.geteuid() != 0:
        pytest.skip("needs root to create a private network namespace for the nftables rules")
    caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in service["CapabilityBoundingSet"].split())
    script = _GATEWAY_SCRIPT.format(caps=caps, python=system_python)
    # A fresh network namespace: the host's ruleset is never touched.
    run = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "gateway ok"
