"""What every section of the configuration file is built from (appliance/config.py assembles them).

Sections that belong to one package (alerts, portal) live in that package and import this, so
the package owns its settings without importing the whole configuration.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class StrictModel(BaseModel):
    """Unknown keys refused (a typo never falls back to a default); values frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
