"""floe-compute: every SQL engine of a data platform behind one pooled, observed interface.

Importing it imports no engine and no driver: an engine's module loads when a plugin for it is
created (or when one of its names below is first used).
"""

from typing import TYPE_CHECKING, Any

from floe_compute.config import (
    ComputeConfig,
    HealthConfig,
    PoolConfig,
    ResourceLimits,
    TimeoutConfig,
)
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    PluginNotFoundError,
    PoolExhaustedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.health import HealthMonitor, HealthState, HealthStatus
from floe_compute.plugin import ComputePlugin, QueryContext, RunningQuery
from floe_compute.pool import PoolStats
from floe_compute.registry import create_plugin, list_plugins
from floe_compute.result import QueryResult

if TYPE_CHECKING:
    from floe_compute.aio import AsyncQueryResult
    from floe_compute.engines.duckdb import DuckDBComputePlugin, DuckDBConfig

__version__ = "0.1.0"

_LAZY = {
    "AsyncQueryResult": "floe_compute.aio",
    "DuckDBComputePlugin": "floe_compute.engines.duckdb",
    "DuckDBConfig": "floe_compute.engines.duckdb",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'floe_compute' has no attribute {name!r}")


__all__ = [
    "AsyncQueryResult",
    "ComputeConfig",
    "ComputeError",
    "ComputePlugin",
    "ConfigError",
    "ConnectionFailedError",
    "DuckDBComputePlugin",
    "DuckDBConfig",
    "HealthConfig",
    "HealthMonitor",
    "HealthState",
    "HealthStatus",
    "PluginNotFoundError",
    "PoolConfig",
    "PoolExhaustedError",
    "PoolStats",
    "QueryCancelledError",
    "QueryContext",
    "QueryError",
    "QueryResult",
    "QueryTimeoutError",
    "ResourceLimitError",
    "ResourceLimits",
    "RunningQuery",
    "TimeoutConfig",
    "__version__",
    "create_plugin",
    "list_plugins",
]
