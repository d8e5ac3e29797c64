"""Manifest loading: a YAML ``floe.yaml`` read safely, a target's fields merged with the
manifest's defaults and ``${VAR}`` references expanded from the environment.

It yields plain fields; validating them is the config models' job (:mod:`floe_compute.config`),
so this module needs none of them and stays below them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from floe_compute.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["MAX_MANIFEST_BYTES", "MAX_MANIFEST_NODES", "load_manifest", "merge_overrides"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def lookup(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(
                    f"{where}: environment variable {m.group(1)} is not set (referenced as ${{...}})"
                )
            return os.environ[m.group(1)]

        return _ENV.sub(lookup, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge keyword overrides (dicts or models) into a config's fields."""
    plain = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in overrides.items()}
    return _merge(base, plain)


MAX_MANIFEST_NODES = 100_000
"""A manifest is a few dozen keys; a YAML alias "bomb" expands a few lines into billions of nodes."""
MAX_MANIFEST_BYTES = 10 * 1024 * 1024


def _expanded_size(node: yaml.Node, sizes: dict[int, int], path: set[int]) -> int:
    """How many nodes ``node`` becomes once its aliases are expanded (each alias shares its node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in path:
        raise ConfigError("a YAML alias refers to its own anchor (a recursive structure)")
    path.add(key)
    size = 1
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, sizes, path)
            if size > MAX_MANIFEST_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, path) + _expanded_size(v, sizes, path)
            if size > MAX_MANIFEST_NODES:
                break
    path.discard(key)
    sizes[key] = size
    return size


def _read_yaml(source: Path) -> Any:
    """The YAML document, refusing what would hang or exhaust memory, as a :class:`ConfigError`."""
    import yaml  # only manifests need it

    try:
        with source.open("rb") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read manifest {source}: {reason}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ConfigError(f"manifest {source}: larger than {MAX_MANIFEST_BYTES // 1024**2} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"manifest {source}: not valid UTF-8 (line {line}, byte {exc.start})") from None
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"manifest {source}: {_reader_problem(exc, text)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_MANIFEST_NODES:
            raise ConfigError(
                f"manifest {source}: its YAML aliases expand to more than {MAX_MANIFEST_NODES} values; "
                "refused (an alias bomb?)"
            )
        return loader.construct_document(node)
    except ConfigError as exc:
        if str(exc).startswith("manifest "):
            raise
        raise ConfigError(f"manifest {source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        # the problem and where, without the snippet of the line (it may hold a password)
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"manifest {source} is not valid YAML: {problem}{where}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"manifest {source}: {_reader_problem(exc, text)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"manifest {source} is not valid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise ConfigError(f"manifest {source}: nested too deeply") from None
    finally:
        loader.dispose()


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> str:
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    return f"character U+{exc.character:04X} is not allowed in YAML (line {line})"


def _target_name(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def load_manifest(path: str | os.PathLike[str], target: str | None = None) -> dict[str, Any]:
    """The fields of one target of a YAML manifest, with the manifest's defaults merged in.

    ``${VAR}`` references are read from the environment; a missing one is a :class:`ConfigError`.
    Every problem with the file is a :class:`ConfigError` naming the file and the key.
    """
    source = Path(path)
    document = _read_yaml(source)
    compute = document.get("compute") if isinstance(document, dict) else None
    if not isinstance(compute, dict) or not isinstance(compute.get("targets"), dict):
        raise ConfigError(f"manifest {source}: expected a 'compute:' mapping with 'targets:'")
    targets: dict[Any, Any] = compute["targets"]
    listed = ", ".join(sorted(_target_name(t) for t in targets)) or "none"
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"target: expected a target name, got a {type(target).__name__}")
    name = target if target is not None else compute.get("default")
    if name is None:
        raise ConfigError(f"manifest {source}: no target given and no 'compute.default'; targets: {listed}")
    if not isinstance(name, str):
        raise ConfigError(
            f"manifest {source}: compute.default: expected a target name, got a {type(name).__name__} "
            f"(targets: {listed})"
        )
    if name not in targets:
        raise ConfigError(f"manifest {source}: no target {name!r}; targets: {listed}")
    fields_in = targets[name]
    if fields_in is not None and not isinstance(fields_in, dict):
        raise ConfigError(
            f"manifest {source}: compute.targets.{name}: expected a mapping of settings (url: ...), "
            f"got a {type(fields_in).__name__}"
        )
    defaults = {k: v for k, v in compute.items() if k not in ("targets", "default")}
    fields = _merge(defaults, fields_in or {})
    for key in fields:
        if not isinstance(key, str):
            raise ConfigError(f"manifest {source}: compute.targets.{name}: key {key!r} is not a name")
    fields.setdefault("name", name)
    expanded: dict[str, Any] = _expand(fields, f"{source}: compute.targets.{name}")
    return expanded
