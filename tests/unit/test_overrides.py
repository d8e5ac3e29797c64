"""``create_plugin``'s keywords are typed (editors complete them) and stay in step with the config."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from floe_compute.config import ComputeConfig
from floe_compute.overrides import ComputeOverrides


def _pairs() -> list[tuple[type[BaseModel], type]]:
    pairs: list[tuple[type[BaseModel], type]] = [(ComputeConfig, ComputeOverrides)]
    hints = typing.get_type_hints(ComputeOverrides)
    for name, field in ComputeConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            pairs.append((field.annotation, hints[name]))
    return pairs


@pytest.mark.parametrize(("model", "typed"), _pairs(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_the_typed_keywords_match_the_config_fields(model: type[BaseModel], typed: type) -> None:
    assert set(typing.get_type_hints(typed)) == set(model.model_fields)


def test_create_plugin_takes_the_typed_keywords_first(tmp_path: Path) -> None:
    """mypy (and an editor) see the typed signature: a wrongly typed common keyword is an error
    there, while an engine's own keyword still type-checks through the second overload."""
    (tmp_path / "app.py").write_text(
        "from floe_compute import create_plugin\n"
        "create_plugin('duckdb:///:memory:', pool={'size': 3}, timeouts={'query': 5})\n"
        "create_plugin('duckdb:///:memory:', extensions=['iceberg'])\n"
        "reveal_type(create_plugin)\n"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mypy"), "--strict", "--no-incremental", "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "Overload(" in done.stdout and "ComputeOverrides" in done.stdout, done.stdout
    assert "Success: no issues found" in done.stdout, done.stdout
