"""floe-compute: every SQL engine of a data platform behind one pooled, observed interface.

Importing it is instant and imports no engine and no driver: each name below is imported on first
use, and an engine's module when a plugin for it is created.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name): typing is not imported
if TYPE_CHECKING:
    from typing import Any

    __version__: str

    from floe_compute.aio import AsyncQueryResult
    from floe_compute.config import (
        ComputeConfig,
        HealthConfig,
        PoolConfig,
        ResourceLimits,
        TimeoutConfig,
    )
    from floe_compute.context import QueryContext, RunningQuery
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
        SessionError,
    )
    from floe_compute.health import HealthMonitor, HealthState, HealthStatus
    from floe_compute.plugin import ComputePlugin
    from floe_compute.pool import PoolStats
    from floe_compute.registry import create_plugin, list_plugins
    from floe_compute.result import QueryResult
    from floe_compute.result_helpers import MultipleResultsFound, NoResultFound
    from floe_compute.session import Session

_LAZY = {
    "AsyncQueryResult": "floe_compute.aio",
    "ComputeConfig": "floe_compute.config",
    "HealthConfig": "floe_compute.config",
    "PoolConfig": "floe_compute.config",
    "ResourceLimits": "floe_compute.config",
    "TimeoutConfig": "floe_compute.config",
    "DuckDBComputePlugin": "floe_compute.engines.duckdb",
    "DuckDBConfig": "floe_compute.engines.duckdb",
    "ComputeError": "floe_compute.errors",
    "ConfigError": "floe_compute.errors",
    "ConnectionFailedError": "floe_compute.errors",
    "PluginNotFoundError": "floe_compute.errors",
    "PoolExhaustedError": "floe_compute.errors",
    "QueryCancelledError": "floe_compute.errors",
    "QueryError": "floe_compute.errors",
    "QueryTimeoutError": "floe_compute.errors",
    "ResourceLimitError": "floe_compute.errors",
    "SessionError": "floe_compute.errors",
    "Session": "floe_compute.session",
    "HealthMonitor": "floe_compute.health",
    "HealthState": "floe_compute.health",
    "HealthStatus": "floe_compute.health",
    "ComputePlugin": "floe_compute.plugin",
    "QueryContext": "floe_compute.context",
    "RunningQuery": "floe_compute.context",
    "PoolStats": "floe_compute.pool",
    "create_plugin": "floe_compute.registry",
    "list_plugins": "floe_compute.registry",
    "QueryResult": "floe_compute.result",
    "MultipleResultsFound": "floe_compute.result_helpers",
    "NoResultFound": "floe_compute.result_helpers",
}


def __getattr__(name: str) -> Any:
    """Import each name on first use (PEP 562), so that a CLI's ``--help`` stays instant."""
    if name == "__version__":  # one source: the installed distribution's metadata
        from importlib.metadata import version

        globals()[name] = value = version("floe-compute")
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'floe_compute' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "MultipleResultsFound",
    "NoResultFound",
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
    "Session",
    "SessionError",
    "TimeoutConfig",
    "__version__",
    "create_plugin",
    "list_plugins",
]
