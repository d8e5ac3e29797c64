"""What an error adds when the user's guess was nearly right: the nearest valid name, and the extra
that installs a missing driver (read from the package's own metadata, so no engine is named here)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["did_you_mean", "install_hint", "nearest"]

DISTRIBUTION = "floe-compute"


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (case does not count), or ``None`` when none is close."""
    by_folded = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(name.lower(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[found[0]] if found else None


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _extras() -> dict[str, list[str]]:
    """Each extra of the installed package, with the (normalised) distributions it requires."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        requirements = metadata(DISTRIBUTION).get_all("Requires-Dist") or []
    except PackageNotFoundError:
        return {}
    extras: dict[str, list[str]] = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9._-]+).*extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        if match:
            extras.setdefault(match.group(2), []).append(_normal(match.group(1)))
    return extras


def _extra_for(module: str, engine: str) -> str | None:
    """The extra whose requirements provide ``module`` (``psycopg``, ``snowflake``, ``pyhive``):
    a requirement named like it, or starting with it; the engine's own name breaks a tie."""
    top = _normal(module.split(".")[0])
    matches = [
        extra
        for extra, names in _extras().items()
        if any(name == top or name.startswith(top + "_") for name in names)
    ]
    if len(matches) > 1:
        matches = [m for m in matches if m in engine or engine in m] or matches
    return matches[0] if matches else None


def _editable() -> bool:
    """Installed from a clone (``uv sync``, ``pip install -e``): then the clone's commands apply."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution(DISTRIBUTION).read_text("direct_url.json")
    except PackageNotFoundError:
        return False
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def install_hint(error: BaseException, engine: str) -> str | None:
    """``install floe-compute[postgres]`` for an engine whose driver could not be imported."""
    if not isinstance(error, ImportError) or not error.name:
        return None
    extra = _extra_for(error.name, engine)
    if extra is None:
        return None
    missing = error.name.split(".")[0]
    if _editable():
        how = f"this is a clone: run `uv sync --extra {extra}` or `pip install -e '.[{extra}]'`"
        how += f" (the {DISTRIBUTION}[{extra}] extra)"
    else:
        how = f"install {DISTRIBUTION}[{extra}] (the extra that adds it)"
    return f"the {engine} engine needs {missing}, not installed here; {how}"


def did_you_mean(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean 'size'?)`` for an unknown field, from the fields valid where it was given;
    ``pool_size`` at the top suggests ``pool={'size': ...}``."""
    from pydantic import BaseModel

    for part in loc[:-1]:  # down to the model the unknown key was given to
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    name = str(loc[-1])
    head, _, rest = name.partition("_")
    nested = model.model_fields.get(head)
    inner = nested.annotation if nested is not None else None
    if rest and isinstance(inner, type) and issubclass(inner, BaseModel) and rest in inner.model_fields:
        return f" (did you mean {head}={{{rest!r}: ...}}?)"
    close = nearest(name, model.model_fields)
    return f" (did you mean {close!r}?)" if close else ""
