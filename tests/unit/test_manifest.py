"""A broken manifest is a ConfigError naming the file and the key, never a raw exception or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from floe_compute import ConfigError, create_plugin
from floe_compute.config import load_manifest

GOOD_TARGET = "  targets:\n    local: {url: 'duckdb:///:memory:'}\n"


def _manifest(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "floe.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_bad_utf8_names_the_file(tmp_path: Path) -> None:
    path = _manifest(tmp_path, b"compute:\n  default: local\n  # caf\xe9\n" + GOOD_TARGET.encode())
    with pytest.raises(ConfigError, match=r"floe\.yaml: not valid UTF-8 \(line 3"):
        create_plugin(manifest=path)


def test_default_as_a_list_names_the_key(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "compute:\n  default: [local]\n" + GOOD_TARGET)
    with pytest.raises(
        ConfigError, match=r"floe\.yaml: compute\.default: expected a target name, got a list"
    ):
        create_plugin(manifest=path)


def test_target_as_a_list_names_the_key(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "compute:\n  targets:\n    local: [duckdb]\n")
    with pytest.raises(ConfigError, match=r"floe\.yaml: compute\.targets\.local: expected a mapping"):
        create_plugin("local", manifest=path)


def test_huge_size_names_the_file_target_and_field(tmp_path: Path) -> None:
    size = "9" * 400 + "GB"
    path = _manifest(
        tmp_path,
        "compute:\n  targets:\n    local:\n      url: 'duckdb:///:memory:'\n"
        f"      limits: {{memory_limit: {size}}}\n",
    )
    with pytest.raises(ConfigError) as caught:
        create_plugin("local", manifest=path)
    message = str(caught.value)
    assert "floe.yaml" in message
    assert "'local'" in message
    assert "limits.memory_limit" in message
    assert size not in message


@pytest.mark.timeout(60)  # unbounded expansion ran for minutes and ended in MemoryError
@pytest.mark.parametrize("levels", [7, 9, 30])
def test_alias_bomb_is_refused(tmp_path: Path, levels: int) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    text = (
        "\n".join(lines) + f"\ncompute:\n  default: local\n  timeouts: {{query: *a{levels}}}\n" + GOOD_TARGET
    )
    with pytest.raises(ConfigError, match=r"floe\.yaml: its YAML aliases expand to more than"):
        create_plugin(manifest=_manifest(tmp_path, text))


def test_small_aliases_still_work(tmp_path: Path) -> None:
    text = (
        "base: &base {query: 7}\ncompute:\n  default: local\n  timeouts: *base\n"
        "  targets:\n    local: {url: 'duckdb:///:memory:', timeouts: *base}\n"
    )
    assert load_manifest(_manifest(tmp_path, text))["timeouts"] == {"query": 7}


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = "loop: &loop [*loop]\ncompute:\n  default: local\n" + GOOD_TARGET
    with pytest.raises(ConfigError, match=r"floe\.yaml: .*recursive"):
        create_plugin(manifest=_manifest(tmp_path, text))


def test_yaml_error_does_not_quote_the_line(tmp_path: Path) -> None:
    text = "compute:\n  targets:\n    local: {url: 'duckdb:///:memory:', password: hunter2-secret\n"
    with pytest.raises(ConfigError, match=r"floe\.yaml is not valid YAML: .*line") as caught:
        create_plugin("local", manifest=_manifest(tmp_path, text))
    assert "hunter2" not in str(caught.value)


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    text = "compute: " + "[" * 2000 + "]" * 2000 + "\n"
    with pytest.raises(ConfigError, match=r"floe\.yaml"):
        create_plugin(manifest=_manifest(tmp_path, text))


@pytest.mark.parametrize(
    ("value", "field"),
    [("yes", "limits.memory_limit"), ("true", "timeouts.query"), ("[1, 2]", "pool.size")],
)
def test_wrong_types_name_file_and_field(tmp_path: Path, value: str, field: str) -> None:
    section, key = field.split(".")
    text = f"compute:\n  targets:\n    local: {{url: 'duckdb:///:memory:', {section}: {{{key}: {value}}}}}\n"
    with pytest.raises(ConfigError, match=rf"floe\.yaml: target 'local': .*{field}"):
        create_plugin("local", manifest=_manifest(tmp_path, text))


def test_missing_file_and_non_string_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read manifest .*nope\.yaml"):
        create_plugin("local", manifest=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"got a int"):
        create_plugin(3, manifest=_manifest(tmp_path, "compute:\n" + GOOD_TARGET))  # type: ignore[arg-type]
