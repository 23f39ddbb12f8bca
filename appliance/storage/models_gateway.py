"""Tables of this feature (see models.py for the conventions); created by their migration."""

from __future__ import annotations

from appliance.storage.models import Base

__all__ = ["Base"]
