"""The BigQuery emulator fixture's failed start says why and leaves no private HOME behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fixtures.bigquery import BigQueryEmulator


def test_a_failed_extension_install_shows_its_output_and_removes_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "bqemulator").write_text("#!/bin/sh\nexit 1\n")
    python = env / "bin" / "python"  # stands in for the tool environment's python: its install fails
    python.write_text("#!/bin/sh\necho 'IO Error: extension spatial not found in wheel' >&2\nexit 3\n")
    python.chmod(0o755)
    homes = tmp_path / "tmp"
    homes.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(homes))
    emulator = BigQueryEmulator(env=env)
    with pytest.raises(RuntimeError, match="extension spatial not found in wheel") as caught:
        emulator.start()
    assert "exit 3" in str(caught.value)
    assert list(homes.iterdir()) == []
