"""profiles.yml rendering for the dbt profile a plugin generates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["render_profiles", "write_profiles"]


def render_profiles(*profiles: dict[str, Any]) -> str:
    """YAML text for one or more ``plugin.dbt_profile()`` mappings."""
    merged: dict[str, Any] = {}
    for profile in profiles:
        merged.update(profile)
    return yaml.safe_dump(merged, sort_keys=False, default_flow_style=False)


def write_profiles(directory: str | Path, *profiles: dict[str, Any]) -> Path:
    """Write ``profiles.yml`` into ``directory`` (for ``dbt --profiles-dir``) and return its path."""
    path = Path(directory) / "profiles.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_profiles(*profiles))
    return path
