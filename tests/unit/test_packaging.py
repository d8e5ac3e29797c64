"""What a user installs: a typed package with its license, one version, and only the real engines."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import floe_compute

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed to build the wheel (make env installs it)"
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("floe_compute-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_ships_the_py_typed_marker(wheel: zipfile.ZipFile) -> None:
    assert "floe_compute/py.typed" in wheel.namelist()


def test_the_wheel_carries_the_license_its_metadata_names(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    message = email.message_from_bytes(wheel.read(metadata))
    assert message["License-Expression"] == "Apache-2.0"
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(license_file).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (ROOT / "LICENSE").read_text() == text


def test_the_wheel_registers_only_real_engines(wheel: zipfile.ZipFile) -> None:
    """The test plugin ``echo://`` lives in its own distribution of the dev group, never here."""
    (points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(points).decode()
    assert "echo" not in text
    assert "duckdb = floe_compute.engines.duckdb:DuckDBComputePlugin" in text


def test_the_version_comes_from_the_installed_metadata() -> None:
    assert floe_compute.__version__ == version("floe-compute")
    assert '__version__ = "' not in (ROOT / "src" / "floe_compute" / "__init__.py").read_text()


@pytest.mark.slow
def test_a_users_strict_mypy_accepts_the_library(tmp_path: Path) -> None:
    """A user's project (not this repository's mypy config) type-checks code that uses the library."""
    (tmp_path / "app.py").write_text(
        "from floe_compute import create_plugin\n\n"
        "with create_plugin('duckdb:///:memory:') as compute:\n"
        "    with compute.execute('select 1') as result:\n"
        "        rows: list[tuple[object, ...]] = result.fetchall()\n"
    )
    mypy = Path(sys.executable).parent / "mypy"
    done = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_demo_installs_only_what_the_demo_uses() -> None:
    """``make demo`` syncs the core, the iceberg extra and pyiceberg: no dev tools, no other
    engine's driver, no dbt (the full environment is ``make env`` / ``make test``)."""
    makefile = (ROOT / "Makefile").read_text()
    (line,) = [x for x in makefile.splitlines() if x.startswith("DEMO_SYNC :=")]
    flags = line.split(":=", 1)[1].split()
    done = subprocess.run(
        [_uv(), "export", "--frozen", "--no-hashes", "--project", str(ROOT), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = {
        row.split("==")[0].strip().lower()
        for row in done.stdout.splitlines()
        if row and not row.startswith(("#", " ", "-e"))
    }
    assert {"duckdb", "pyiceberg", "duckdb-extension-iceberg", "pyarrow"} <= names
    unwanted = {"pytest", "dbt-core", "psycopg", "snowflake-connector-python", "pandas", "mypy", "pyhive"}
    assert names.isdisjoint(unwanted), sorted(names & unwanted)
    assert "$(VENV)/.demo-synced" in makefile.split("\ndemo:", 1)[1].splitlines()[0]
