"""The configuration, described from the pydantic models themselves.

One source answers three questions, so none of the answers can drift from the code: the
configuration reference of the documentation (:func:`reference_markdown`), the JSON Schema of a
``floe.yaml`` manifest for editors (:func:`manifest_schema`), and the resolved configuration of one
target with its secrets masked (:func:`resolved_config`). Engines are found through the
``floe.computes`` entry points, so a newly installed engine is described without any edit here.
"""

from __future__ import annotations

import enum
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ByteSize, SecretStr
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import PydanticUndefined, core_schema

from floe_compute.config import ComputeConfig
from floe_compute.docstrings import field_docstrings
from floe_compute.registry import create_plugin, get_plugin_class, list_plugins
from floe_compute.units import MAX_SECONDS, Seconds

__all__ = [
    "MASK",
    "EngineConfig",
    "engine_configs",
    "manifest_schema",
    "reference_markdown",
    "resolved_config",
]

MASK = "**********"
"""What a secret is shown as."""


@dataclass(frozen=True)
class EngineConfig:
    """One config class and the installed plugins (entry-point names) configured by it."""

    config_class: type[ComputeConfig]
    plugins: tuple[str, ...]
    schemes: tuple[str, ...]


def engine_configs() -> list[EngineConfig]:
    """Every installed engine's config class, in plugin-name order (from the entry points)."""
    found: dict[type[ComputeConfig], tuple[list[str], list[str]]] = {}
    for name in list_plugins():
        cls = get_plugin_class(name)
        plugins, schemes = found.setdefault(cls.config_class, ([], []))
        plugins.append(name)
        schemes.extend(s for s in cls.schemes if s not in schemes)
    return [EngineConfig(c, tuple(p), tuple(s)) for c, (p, s) in found.items()]


# -- rows of the reference ----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRow:
    """One leaf setting: ``pool.size``, its type, default and description."""

    key: str
    type: str
    default: str
    description: str


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if _is_union(annotation) and len(args) == 1:
        return args[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for item in _flat(metadata):
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if isinstance(item, annotated_types.BaseMetadata) and value is not None:
                parts.append(f"{symbol} {value}")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            parts.append(f"matching `{pattern}`")
    return f" ({', '.join(parts)})" if parts else ""


_SECONDS_CHECKS = typing.get_args(Seconds)[1:]
"""The validators that make a ``float`` a :data:`~floe_compute.units.Seconds`."""


def _flat(metadata: list[Any]) -> Iterator[Any]:
    """Constraints, also those inside an ``Annotated[..., Field(gt=0)]``."""
    for item in metadata:
        if isinstance(item, FieldInfo):
            yield from item.metadata
        else:
            yield item


def type_name(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A short, readable name for a field's type: ``int (> 0) or None``, ``list of str``."""
    if annotation is Seconds or any(item in _SECONDS_CHECKS for item in metadata or []):
        return f"seconds (> 0, at most {MAX_SECONDS / 86400:g} days)"
    suffix = _constraints(metadata or [])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], list(args[1:])) + suffix
    if _is_union(annotation):
        names = [type_name(a) for a in args if a is not type(None)]
        optional = " or None" if type(None) in args else ""
        return " or ".join(dict.fromkeys(names)) + optional + suffix
    if origin in (tuple, list) and args:
        return f"list of {type_name(args[0])}" + suffix
    if origin is dict and args:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}" + suffix
    if annotation is Any:
        return "any"
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret string"
        if issubclass(annotation, ByteSize):
            return "size (bytes, or text such as 2GB or 512MiB)"
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, enum.Enum):
            return " / ".join(repr(m.value) for m in annotation)
        if annotation.__name__ == "URL":
            return "URL"
        return annotation.__name__ + suffix
    return str(annotation).replace("typing.", "") + suffix


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`"


def field_rows(model: type[BaseModel], prefix: str = "") -> Iterator[FieldRow]:
    """Every leaf setting of a model; nested models are walked (``attach[].name`` for lists)."""
    docs = field_docstrings(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        description = field.description or docs.get(name, "")
        annotation = _unwrap_optional(field.annotation)
        if _is_model(annotation):
            yield from field_rows(annotation, f"{key}.")
            continue
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) in (tuple, list) else None
        if item is not None and _is_model(item):
            yield FieldRow(key, f"list of {item.__name__}", _default(field), description)
            yield from field_rows(item, f"{key}[].")
            continue
        yield FieldRow(
            key,
            type_name(field.annotation, list(field.metadata)),
            _default(field),
            description,
        )


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference_markdown(heading_level: int = 2) -> str:
    """The configuration reference: a table per installed engine config, every field in it."""
    hashes = "#" * heading_level
    out: list[str] = []
    for engine in engine_configs():
        cls = engine.config_class
        plugins = ", ".join(f"`{p}`" for p in engine.plugins)
        schemes = ", ".join(f"`{s}://`" for s in engine.schemes)
        out.append(f"{hashes} {cls.__name__}\n")
        doc = " ".join((cls.__doc__ or "").split())
        where = f"`{cls.__module__}.{cls.__name__}`"
        out.append(f"{doc}\n\nPlugins: {plugins}. URL schemes: {schemes}. Class: {where}.\n")
        out.append("| key | type | default | what it does |")
        out.append("|---|---|---|---|")
        for row in field_rows(cls):
            out.append(
                f"| `{row.key}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |"
            )
        out.append("")
    return "\n".join(out)


# -- JSON Schema ----------------------------------------------------------------------------------


class _Schema(GenerateJsonSchema):
    """Arbitrary types (the SQLAlchemy ``URL``) are written as strings in a manifest."""

    def is_instance_schema(self, schema: core_schema.IsInstanceSchema) -> JsonSchemaValue:
        return {"type": "string"}


_NOT_DEFAULTS = ("url", "password", "name")
"""Fields of a target that make no sense as the manifest-wide defaults under ``compute:``."""


def manifest_schema() -> dict[str, Any]:
    """JSON Schema of a ``floe.yaml`` manifest, with a target shape for every installed engine."""
    classes = [e.config_class for e in engine_configs()]
    every: list[type[BaseModel]] = [ComputeConfig, *classes]
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [(cls, "validation") for cls in every]
    keys, top = models_json_schema(
        models,
        ref_template="#/$defs/{model}",
        schema_generator=_Schema,
    )
    defs: dict[str, Any] = top.get("$defs", {})
    base = defs[keys[(ComputeConfig, "validation")]["$ref"].rsplit("/", 1)[1]]
    targets = [keys[(cls, "validation")] for cls in classes]
    defaults = {k: v for k, v in base.get("properties", {}).items() if k not in _NOT_DEFAULTS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "floe-compute manifest (floe.yaml)",
        "type": "object",
        "properties": {
            "compute": {
                "type": "object",
                "description": "Targets, the default target, and defaults that every target inherits.",
                "properties": {
                    "default": {"type": "string", "description": "The target used when none is named."},
                    "targets": {
                        "type": "object",
                        "description": "Targets by name; each is one engine's configuration.",
                        "additionalProperties": {"anyOf": targets} if targets else {"type": "object"},
                    },
                    **defaults,
                },
                "required": ["targets"],
                # engine-specific defaults (such as DuckDB's extensions) are allowed here too
                "additionalProperties": True,
            }
        },
        "required": ["compute"],
        "$defs": defs,
    }


# -- resolved configuration -----------------------------------------------------------------------


def _mask(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, secrets) for v in value]
    if isinstance(value, str) and value in secrets:
        return MASK
    return value


def resolved_config(
    target: str | None, manifest: str | os.PathLike[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The configuration a plugin for ``target`` would get (a URL or a manifest target), with every
    default filled in and every secret masked. Nothing is connected."""
    plugin = create_plugin(target, manifest=manifest, **overrides)
    config = plugin.config
    dumped: dict[str, Any] = config.model_dump(mode="json")  # SecretStr dumps as its mask
    masked: dict[str, Any] = _mask(dumped, frozenset(s for s in config.secrets if s))
    return {"plugin": plugin.name, **masked}
