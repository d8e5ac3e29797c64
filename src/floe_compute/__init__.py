"""floe-compute: every SQL engine of a data platform behind one pooled, observed interface."""

from floe_compute.config import (
    ComputeConfig,
    HealthConfig,
    PoolConfig,
    ResourceLimits,
    TimeoutConfig,
)
from floe_compute.engines.duckdb import DuckDBComputePlugin, DuckDBConfig
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
from floe_compute.plugin import ComputePlugin
from floe_compute.pool import PoolStats
from floe_compute.registry import create_plugin, list_plugins
from floe_compute.result import QueryResult

__version__ = "0.1.0"

__all__ = [
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
    "QueryError",
    "QueryResult",
    "QueryTimeoutError",
    "ResourceLimitError",
    "ResourceLimits",
    "TimeoutConfig",
    "__version__",
    "create_plugin",
    "list_plugins",
]
