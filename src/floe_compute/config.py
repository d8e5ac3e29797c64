"""Validated, frozen configuration models and manifest loading.

Configs are pydantic v2 models: a wrong value fails when the config is built, with the field's path in
the message. Secrets are ``SecretStr`` (or live in the URL, whose ``repr`` hides the password).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from floe_compute.errors import ConfigError, redact

__all__ = [
    "ComputeConfig",
    "HealthConfig",
    "PoolConfig",
    "ResourceLimits",
    "TimeoutConfig",
    "load_manifest",
    "parse_url",
    "validation_message",
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$", re.IGNORECASE)
_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


def parse_size(value: str | int) -> int:
    """Bytes in a size such as ``2GB``, ``512MiB`` or ``1048576``."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; expected a number with a unit such as 512MB or 2GB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").upper()])


def _check_size(value: str | int | None) -> str | None:
    if value is None:
        return None
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return value if isinstance(value, str) else f"{value}B"


Size = Annotated[str | int | None, Field(default=None)]


class _Model(BaseModel):
    """Frozen and strict about unknown keys. Inputs stay out of pydantic's own messages (they may
    be secrets); ``model_validate`` fails with a :class:`ConfigError` that names the field."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, f"invalid {cls.__name__}")) from None


class PoolConfig(_Model):
    """The SQLAlchemy ``QueuePool`` behind a plugin."""

    size: PositiveInt = 5
    max_overflow: Annotated[int, Field(ge=0)] = 10
    timeout: PositiveFloat = 30.0
    recycle: PositiveFloat | None = None
    pre_ping: bool | None = None
    """``None`` takes the engine's default (on for servers, off for embedded engines)."""


class TimeoutConfig(_Model):
    """Default deadlines, in seconds. ``query=None`` means no deadline."""

    query: PositiveFloat | None = None
    connect: PositiveFloat = 10.0


class ResourceLimits(_Model):
    """Resource limits; engines apply the ones they support, ``max_result_rows`` works everywhere."""

    memory_limit: Size = None
    threads: PositiveInt | None = None
    temp_directory: Path | None = None
    max_temp_directory_size: Size = None
    max_result_rows: PositiveInt | None = None

    _sizes = field_validator("memory_limit", "max_temp_directory_size")(_check_size)


class HealthConfig(_Model):
    """When a working engine counts as degraded, and the optional background monitor."""

    slow_ping_ms: PositiveFloat = 1000.0
    monitor_interval: PositiveFloat | None = None


class ComputeConfig(_Model):
    """What every plugin is configured with; engines subclass it to add their own fields."""

    url: URL
    password: SecretStr | None = None
    """Overrides the URL's password; lets a manifest read it from ``${ENV}``."""
    name: str | None = None
    """The target's name: the pool name in metrics and the dbt target."""
    pool: PoolConfig = PoolConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    limits: ResourceLimits = ResourceLimits()
    health: HealthConfig = HealthConfig()
    settings: dict[str, str | int | float | bool] = {}
    """Engine session settings, applied to every pooled connection."""
    telemetry: bool = True

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_url(cls, data: Any) -> Any:
        """Keep the URL's password only as ``password`` (a SecretStr), so no dump can show it."""
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        try:
            url = parse_url(data["url"])
        except ValueError:
            return data  # the field validator reports it
        data = dict(data)
        if url.password is not None:
            data.setdefault("password", str(url.password))
            url = url._replace(password=None)  # set() ignores None
        data["url"] = url
        return data

    @field_validator("url", mode="before")
    @classmethod
    def _parse_url(cls, value: Any) -> URL:
        return parse_url(value)

    @field_serializer("url")
    def _dump_url(self, url: URL) -> str:
        return url.render_as_string(hide_password=False)  # the password is never in it

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in this config, for scrubbing text before it is shown."""
        return (self.password.get_secret_value(),) if self.password else ()

    def sqlalchemy_url(self) -> URL:
        """The URL with :attr:`password` applied."""
        if self.password is None:
            return self.url
        return self.url.set(password=self.password.get_secret_value())


def parse_url(value: Any) -> URL:
    """A SQLAlchemy URL from a string, with an error that never echoes a password."""
    if isinstance(value, URL):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a URL such as 'duckdb:///:memory:' or 'postgresql+psycopg://...'")
    try:
        return make_url(value.strip())
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            f"cannot parse {redact(value)!r} as a URL; expected scheme://[user[:password]@]host/db, "
            "for example 'duckdb:///:memory:'"
        ) from exc


_SECRET_FIELDS = ("password", "url", "secret", "token", "credential")


def validation_message(error: ValidationError, title: str) -> str:
    """One readable line per invalid field, naming the field; secret inputs are never echoed."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        shown = ""
        if not any(s in field.lower() for s in _SECRET_FIELDS) and item["type"] != "missing":
            value = item.get("input")
            if isinstance(value, str | int | float | bool) or value is None:
                shown = f" (got {value!r})"
        lines.append(f"{field}: {message}{shown}")
    return f"{title}: " + "; ".join(lines)


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


def load_manifest(path: str | os.PathLike[str], target: str | None = None) -> dict[str, Any]:
    """The fields of one target of a YAML manifest, with the manifest's defaults merged in.

    ``${VAR}`` references are read from the environment; a missing one is a :class:`ConfigError`.
    """
    import yaml  # only manifests need it

    source = Path(path)
    try:
        document = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {source}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"manifest {source} is not valid YAML: {exc}") from exc
    compute = document.get("compute") if isinstance(document, dict) else None
    if not isinstance(compute, dict) or not isinstance(compute.get("targets"), dict):
        raise ConfigError(f"manifest {source}: expected a 'compute:' mapping with 'targets:'")
    targets: dict[str, Any] = compute["targets"]
    name = target or compute.get("default")
    if name is None:
        raise ConfigError(
            f"manifest {source}: no target given and no 'compute.default'; "
            f"targets: {', '.join(sorted(targets))}"
        )
    if name not in targets:
        raise ConfigError(f"manifest {source}: no target {name!r}; targets: {', '.join(sorted(targets))}")
    defaults = {k: v for k, v in compute.items() if k not in ("targets", "default")}
    fields = _merge(defaults, targets[name] or {})
    fields.setdefault("name", name)
    expanded: dict[str, Any] = _expand(fields, f"{source}: compute.targets.{name}")
    return expanded
