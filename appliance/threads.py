"""Threads that the operating system knows by name.

Python names its threads only for itself: `top -H`, `ps -L` and `/proc/<pid>/task/*/comm` show
every camera thread as "python". Named at the OS level too, a support engineer (and the camera
benchmark) can see which camera and which stage takes the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable
from typing import Final

OS_NAME_BYTES: Final = 15
"""Linux keeps 15 bytes of a thread's name (16 with the terminating NUL)."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_setname = getattr(_libc, "pthread_setname_np", None)
_self = getattr(_libc, "pthread_self", None)
if _self is not None:
    _self.restype = ctypes.c_void_p


def name_this_thread(name: str) -> None:
    """Give the calling thread `name` at the OS level too (cut to 15 bytes); a no-op where the C
    library cannot (a name is a convenience, never a reason to fail)."""
    if _setname is None or _self is None:
        return
    _setname(ctypes.c_void_p(_self()), name.encode()[:OS_NAME_BYTES])


def start_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread running `target`, named `name` for Python and for the OS."""

    def body() -> None:
        name_this_thread(name)
        target()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread
