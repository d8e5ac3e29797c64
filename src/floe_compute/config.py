"""Validated, frozen configuration models, and the URL helpers every engine's config uses.

Configs are pydantic v2 models: a wrong value fails when the config is built, with the field's path in
the message. Secrets are ``SecretStr`` (or live in the URL, whose ``repr`` hides the password).
Sizes and durations are checked in :mod:`floe_compute.units`; a YAML manifest is read by
:mod:`floe_compute.manifest` (``load_manifest`` and ``merge_overrides`` stay importable from here).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PositiveInt,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from floe_compute.docstrings import field_docstrings
from floe_compute.errors import ConfigError, is_secret_key, redact
from floe_compute.hints import did_you_mean as _did_you_mean
from floe_compute.manifest import load_manifest, merge_overrides
from floe_compute.retry import RetryConfig
from floe_compute.units import MAX_SECONDS, Seconds, check_size, check_timeout, shown_value

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

__all__ = [
    "MAX_SECONDS",
    "ComputeConfig",
    "ErrorsConfig",
    "HealthConfig",
    "PoolConfig",
    "ResourceLimits",
    "TimeoutConfig",
    "check_timeout",
    "display_url",
    "field_docstrings",
    "load_manifest",
    "merge_overrides",
    "parse_url",
    "url_query_fields",
    "validation_message",
]

MAX_THREADS = 1024
"""More threads than any engine here can use; DuckDB takes seconds to start 100,000."""


class ConfigModel(BaseModel):
    """Frozen and strict about unknown keys. Inputs stay out of pydantic's own messages (they may
    be secrets); ``model_validate`` fails with a :class:`ConfigError` that names the field."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,
        # built on first validation: a process builds only the models of the engine it uses
        defer_build=True,
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A field's docstring is its description in a JSON Schema (as ``use_attribute_docstrings``
        would make it, but read from the source only when a schema is asked for, not at import)."""
        json_schema = handler(core_schema)
        properties = handler.resolve_ref_schema(json_schema).get("properties", {})
        docs = field_docstrings(cls)
        for name, field in cls.model_fields.items():
            for key in (name, field.alias):
                if key in properties and name in docs and field.description is None:
                    properties[key].setdefault("description", docs[name])
        return json_schema

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, f"invalid {cls.__name__}", cls)) from None


class PoolConfig(ConfigModel):
    """The SQLAlchemy ``QueuePool`` behind a plugin."""

    size: PositiveInt = 5
    """Connections kept open in the pool."""
    max_overflow: Annotated[int, Field(ge=0)] = 10
    """Extra connections opened when all ``size`` are in use, closed again when returned."""
    timeout: Seconds = 30.0
    """Seconds a caller waits for a free connection before ``PoolExhaustedError``."""
    recycle: Seconds | None = None
    """Seconds after which a connection is replaced on its next checkout; ``None``: never."""
    pre_ping: bool | None = None
    """``None`` takes the engine's default (on for servers, off for embedded engines)."""


class TimeoutConfig(ConfigModel):
    """Default deadlines, in seconds. ``query=None`` means no deadline."""

    query: Seconds | None = None
    """Deadline of a query (execution and fetching) when ``execute()`` gets no ``timeout=``."""
    connect: Seconds = 10.0
    """Seconds to wait for the engine to accept a new connection."""


class ResourceLimits(ConfigModel):
    """Resource limits; engines apply the ones they support, ``max_result_rows`` works everywhere."""

    memory_limit: ByteSize | None = None
    """Memory the engine may use for queries: a size such as ``2GB`` (decimal) or ``512MiB``
    (binary), as ``pydantic.ByteSize``; engines without such a limit reject it."""
    threads: Annotated[int, Field(gt=0, le=MAX_THREADS)] | None = None
    """Threads (or parallel workers) one query may use."""
    temp_directory: Path | None = None
    """Where the engine spills to disk when a query exceeds ``memory_limit``."""
    max_temp_directory_size: ByteSize | None = None
    """The most disk that spilling may use, such as ``10GB``."""
    max_result_rows: PositiveInt | None = None
    """A result that would deliver more rows fails with ``ResourceLimitError`` (every engine)."""

    _sizes = field_validator("memory_limit", "max_temp_directory_size", mode="before")(check_size)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number of threads, not a boolean")
        if isinstance(value, int) and value > MAX_THREADS:
            raise ValueError(f"at most {MAX_THREADS} threads (this machine has {os.cpu_count()} cores)")
        return value


class HealthConfig(ConfigModel):
    """When a working engine counts as degraded, and the optional background monitor."""

    slow_ping_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1000.0
    """A health ping slower than this reports ``degraded``."""
    monitor_interval: Seconds | None = None
    """Seconds between background health checks; ``None``: no monitor thread."""


class ErrorsConfig(ConfigModel):
    """What the library's errors carry."""

    keep_driver_cause: bool = True
    """Keep the driver's exception as ``__cause__`` of a library error. Its message is the engine's
    own and can quote a bound value (PostgreSQL: ``invalid input syntax for type integer: "..."``);
    a service that ships tracebacks to an error tracker can switch it off. Secrets the config knows
    are never chained either way."""


class ComputeConfig(ConfigModel):
    """What every plugin is configured with; engines subclass it to add their own fields."""

    url: URL
    """The engine's SQLAlchemy URL, such as ``duckdb:///warehouse.duckdb``; a password in it is
    moved to ``password``."""
    password: SecretStr | None = None
    """Overrides the URL's password; lets a manifest read it from ``${ENV}``."""
    url_secrets: dict[str, SecretStr] = {}
    """The URL's secret query parameters (``?token=...``, ``?private_key_passphrase=...``), moved
    out of :attr:`url` when it is parsed so that no repr, dump or log line shows them;
    :meth:`sqlalchemy_url` puts them back for the driver."""
    name: str | None = None
    """The target's name: the pool name in metrics and the dbt target."""
    pool: PoolConfig = PoolConfig()
    """The connection pool."""
    timeouts: TimeoutConfig = TimeoutConfig()
    """Default deadlines."""
    limits: ResourceLimits = ResourceLimits()
    """Resource limits."""
    health: HealthConfig = HealthConfig()
    """Health checks and the background monitor."""
    errors: ErrorsConfig = ErrorsConfig()
    """What the library's errors carry."""
    retry: RetryConfig = RetryConfig()
    """Safe retries: a read whose connection was lost before its first row runs again once."""
    settings: dict[str, str | int | float | bool] = {}
    """Engine session settings, applied to every pooled connection. Values of secret-looking
    names (``s3_secret_access_key``) are masked in reprs and JSON dumps."""
    telemetry: bool = True
    """OpenTelemetry spans and metrics for this plugin; ``false`` switches both off."""

    unsupported_limits: ClassVar[Mapping[str, str]] = {}
    """The :class:`ResourceLimits` this engine cannot honour: each one's name, and why (or what to
    use instead). Declared once here rather than checked by each engine: setting one fails
    validation with a message naming the limit, the engine and the reason."""
    engine_title: ClassVar[str | None] = None
    """The engine's name in those messages; default: the class name without ``Config``."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A misspelt name in :attr:`unsupported_limits` would never refuse anything: it fails
        where the engine's config class is defined."""
        super().__pydantic_init_subclass__(**kwargs)
        known = ResourceLimits.model_fields
        unknown = sorted(name for name in cls.unsupported_limits if name not in known)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.unsupported_limits: {', '.join(unknown)} is not a resource limit; "
                f"the limits are {', '.join(known)}"
            )

    @model_validator(mode="before")
    @classmethod
    def _secrets_out_of_url(cls, data: Any) -> Any:
        """Keep the URL's password and secret query parameters only as SecretStr fields."""
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        try:
            url = parse_url(data["url"])
        except ValueError:
            return data  # the field validator reports it
        data = dict(data)
        query = dict(url.query)
        found: dict[str, str] = {}
        for key in [k for k in query if is_secret_key(k)]:
            value = query.pop(key)
            if not isinstance(value, str):
                raise ValueError(f"url: the secret query parameter {key!r} is given more than once")
            found[key] = value
        if url.password is not None:
            data.setdefault("password", str(url.password))
            url = url._replace(password=None)  # set() ignores None
        if found:
            url = url.set(query=query)
        if "password" in found:
            data.setdefault("password", found.pop("password"))
        if found:
            given = data.get("url_secrets")
            data["url_secrets"] = {**found, **(given if isinstance(given, Mapping) else {})}
        data["url"] = url
        return data

    @model_validator(mode="after")
    def _supported_limits(self) -> ComputeConfig:
        for limit, why in self.unsupported_limits.items():
            if getattr(self.limits, limit) is not None:
                engine = self.engine_title or type(self).__name__.removesuffix("Config")
                raise ValueError(f"limits.{limit}: not supported by {engine} ({why})")
        return self

    @field_validator("url", mode="before")
    @classmethod
    def _parse_url(cls, value: Any) -> URL:
        return parse_url(value)

    @field_serializer("url")
    def _dump_url(self, url: URL) -> str:
        return url.render_as_string(hide_password=False)  # the secrets are never in it

    @field_serializer("settings")
    def _dump_settings(self, settings: dict[str, Any], info: SerializationInfo) -> dict[str, Any]:
        return _masked(settings) if info.mode_is_json() else settings

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield (
                key,
                (display_url(value) if key == "url" else _masked(value) if key == "settings" else value),
            )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in this config, for scrubbing text before it is shown."""
        found = [self.password.get_secret_value()] if self.password else []
        found += [s.get_secret_value() for s in self.url_secrets.values()]
        found += [str(v) for k, v in self.settings.items() if is_secret_key(k) and isinstance(v, str)]
        return tuple(s for s in found if s)

    def sqlalchemy_url(self) -> URL:
        """The URL with :attr:`password` and :attr:`url_secrets` applied: for the driver only."""
        url = self.url
        if self.url_secrets:
            url = url.update_query_dict({k: s.get_secret_value() for k, s in self.url_secrets.items()})
        if self.password is not None:
            url = url.set(password=self.password.get_secret_value())
        return url


def _masked(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: "***" if is_secret_key(k) else v for k, v in settings.items()}


def display_url(url: URL | str) -> str:
    """A URL as it may be shown anywhere (reprs, metric labels, spans, logs, CLI output, errors):
    no password, no secret query parameter, no credentials in a ``scheme://user:pw@`` string."""
    if isinstance(url, str):
        text = url
        try:
            url = make_url(text)
        except Exception:
            return redact(text)
    shown = url.set(query={k: "***" if is_secret_key(k) else v for k, v in url.query.items()})
    return redact(shown.render_as_string(hide_password=True))


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


def url_query_fields(data: Any, names: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """For an engine config's "before" validator: the URL query parameters among ``names`` (config
    fields given in the URL), and a copy of ``data`` whose URL no longer has them. None when there
    is nothing to move (no URL, none of them, or a URL the field validator will report)."""
    if not isinstance(data, dict) or data.get("url") is None:
        return None
    try:
        url = parse_url(data["url"])
    except ValueError:
        return None
    moved = {name: str(url.query[name]) for name in names if name in url.query}
    if not moved:
        return None
    return {**data, "url": url.difference_update_query(moved)}, moved


_SECRET_FIELDS = ("password", "url", "secret", "token", "credential")


def validation_message(error: ValidationError, title: str, model: type[BaseModel] | None = None) -> str:
    """One readable line per invalid field, naming the field; secret inputs are never echoed."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and model is not None:
            message += _did_you_mean(model, item["loc"])
        shown = ""
        if not any(s in field.lower() for s in _SECRET_FIELDS) and item["type"] != "missing":
            value = item.get("input")
            if isinstance(value, str | int | float | bool) or value is None:
                shown = f" (got {shown_value(value)})"
        lines.append(f"{field}: {message}{shown}")
    return f"{title}: " + "; ".join(lines)
