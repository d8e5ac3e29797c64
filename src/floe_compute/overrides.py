"""The keywords of ``create_plugin(url, **overrides)``, typed so that editors complete them.

They mirror the fields of :class:`~floe_compute.config.ComputeConfig` (a test keeps the two in
step). An engine's own fields (DuckDB's ``extensions``, Snowflake's ``warehouse``) are still
accepted: ``create_plugin`` has a second, untyped overload for them, and pydantic validates every
keyword either way (an unknown one is a ``ConfigError`` naming the nearest field).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypedDict

__all__ = [
    "ComputeOverrides",
    "ErrorsOverrides",
    "HealthOverrides",
    "LimitsOverrides",
    "PoolOverrides",
    "TimeoutsOverrides",
]

Seconds = float | int | str
Size = int | str


class PoolOverrides(TypedDict, total=False):
    size: int
    max_overflow: int
    timeout: Seconds
    recycle: Seconds | None
    pre_ping: bool | None


class TimeoutsOverrides(TypedDict, total=False):
    query: Seconds | None
    connect: Seconds


class LimitsOverrides(TypedDict, total=False):
    memory_limit: Size | None
    threads: int | None
    temp_directory: str | os.PathLike[str] | None
    max_temp_directory_size: Size | None
    max_result_rows: int | None


class HealthOverrides(TypedDict, total=False):
    slow_ping_ms: float
    monitor_interval: Seconds | None


class ErrorsOverrides(TypedDict, total=False):
    keep_driver_cause: bool


class RetryOverrides(TypedDict, total=False):
    reads: int


class ComputeOverrides(TypedDict, total=False):
    """Every engine's fields; see the configuration reference for each."""

    url: str
    password: str
    url_secrets: Mapping[str, str]
    name: str | None
    pool: PoolOverrides
    timeouts: TimeoutsOverrides
    limits: LimitsOverrides
    health: HealthOverrides
    errors: ErrorsOverrides
    retry: RetryOverrides
    settings: Mapping[str, str | int | float | bool]
    telemetry: bool
