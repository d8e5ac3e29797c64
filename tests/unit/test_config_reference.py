"""The configuration reference, the manifest's JSON Schema and ``floe-compute config``: one source
(the pydantic models of every installed engine), so what the docs say is what the code does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from floe_compute.reference import engine_configs, field_rows, manifest_schema, reference_markdown
from floe_compute.registry import get_plugin_class, list_plugins

MANIFEST = """
compute:
  default: local
  timeouts: {query: 120}
  targets:
    local: {url: "duckdb:///warehouse.duckdb", limits: {memory_limit: 2GB}}
    pg:
      url: "postgresql+psycopg://analyst@db/warehouse"
      password: "${PG_PASSWORD}"
      pool: {size: 8}
    lake:
      url: "duckdb:///:memory:"
      attach:
        - {name: lake, endpoint: "https://catalog.example.com", warehouse: analytics,
           client_id: floe, client_secret: "${LAKE_SECRET}"}
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floe_compute.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_every_installed_engine_is_described() -> None:
    """Engines come from the entry points: a newly installed one appears without an edit."""
    described = {name for engine in engine_configs() for name in engine.plugins}
    assert described == set(list_plugins())
    text = reference_markdown()
    for name in list_plugins():
        assert f"`{name}`" in text
        assert f"## {get_plugin_class(name).config_class.__name__}" in text


def test_every_field_of_every_engine_has_a_description() -> None:
    """A field without a docstring would be a blank line in the reference: name it here."""
    missing = [
        f"{engine.config_class.__name__}.{row.key}"
        for engine in engine_configs()
        for row in field_rows(engine.config_class)
        if not row.description.strip()
    ]
    assert missing == [], f"fields without a docstring: {missing}"


def test_reference_rows_carry_the_real_defaults() -> None:
    rows = {row.key: row for engine in engine_configs() for row in field_rows(engine.config_class)}
    assert rows["pool.size"].default == "`5`"
    assert rows["pool.max_overflow"].default == "`10`"
    assert rows["pool.timeout"].default == "`30.0`"
    assert rows["timeouts.connect"].default == "`10.0`"
    assert rows["timeouts.query"].default == "`None`"
    assert rows["timeouts.query"].type == "seconds (> 0, at most 7 days) or None"
    assert rows["limits.threads"].type == "int (> 0, <= 1024) or None"
    assert rows["limits.memory_limit"].type.startswith("size")
    assert rows["attach[].endpoint"].default == "required"
    assert "secret" in rows["attach[].client_secret"].type


def test_schema_accepts_a_real_manifest_and_names_what_is_wrong() -> None:
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = yaml.safe_load(MANIFEST)
    jsonschema.validate(document, schema)
    document["compute"]["targets"]["local"]["pool"] = {"sizes": 3}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
    document["compute"]["targets"]["local"]["pool"] = {"size": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_cli_schema_is_the_same_document() -> None:
    done = run("config", "--schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(json.dumps(manifest_schema()))


def test_cli_resolves_a_target_with_defaults_and_masks_secrets(tmp_path: Path) -> None:
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(MANIFEST)
    env = {"PG_PASSWORD": "pw-7f3a9c", "LAKE_SECRET": "lake-secret-51be", "PATH": "/usr/bin:/bin"}
    pg = run("config", "pg", "-m", str(manifest), env=env)
    assert pg.returncode == 0, pg.stderr
    resolved = yaml.safe_load(pg.stdout)
    assert resolved["plugin"] == "postgresql"
    assert resolved["pool"] == {
        "size": 8,
        "max_overflow": 10,
        "timeout": 30.0,
        "recycle": None,
        "pre_ping": None,
    }
    assert resolved["timeouts"] == {"query": 120.0, "connect": 10.0}  # the manifest-wide default
    assert resolved["password"] == "**********"
    assert "pw-7f3a9c" not in pg.stdout + pg.stderr

    lake = run("config", "lake", "-m", str(manifest), "--json", env=env)
    assert lake.returncode == 0, lake.stderr
    catalog = json.loads(lake.stdout)["attach"][0]
    assert catalog["client_secret"] == "**********"
    assert "lake-secret-51be" not in lake.stdout

    default = run("config", "-m", str(manifest), env=env)
    assert yaml.safe_load(default.stdout)["name"] == "local"


def test_cli_config_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    nothing = run("config")
    assert nothing.returncode == 2
    assert "config needs a TARGET" in nothing.stderr
    manifest = tmp_path / "floe.yaml"
    manifest.write_text(MANIFEST)
    unset = run("config", "pg", "-m", str(manifest), env={"PATH": "/usr/bin:/bin"})
    assert unset.returncode == 2
    assert "PG_PASSWORD is not set" in unset.stderr
    assert "Traceback" not in unset.stderr
