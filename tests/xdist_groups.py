"""How `make test` shares the suite out among pytest-xdist workers (`-n 3 --dist loadgroup`).

Tests of one group run one after another on a single worker; every other test goes to whichever
worker is free. The biggest groups are handed out first, so each starts at once on a worker of its
own. Without xdist (`pytest tests/test_x.py`) the marks change nothing.
"""

from __future__ import annotations

import pytest

REALTIME = pytest.mark.xdist_group("realtime")
"""Camera pipelines running in real time whose assertions are latencies: an event within 1 s of
the figure entering, a rendition or clip within 2-3 s of clip_to, a stop within systemd's budget.
Each keeps decoders and encoders busy; two at once on the 2-core box would measure each other."""

NETNS = pytest.mark.xdist_group("netns")
"""Network-namespace topologies: a module's topology is built once rather than on every worker,
and the transfer rates and first-packet latencies measured through them never overlap."""
