"""The contract suite: what a user can rely on from every ComputePlugin.

Each section is a class of its own (``contract_*.py``); :class:`ComputePluginContract` combines them.
An engine's test subclasses it with a ``compute_factory`` fixture and overrides the SQL hooks and
settings of :class:`~floe_compute.testing.contract_base.ContractBase` where it differs.
"""

from __future__ import annotations

from floe_compute.testing.contract_arrow_types import ArrowTypesContract
from floe_compute.testing.contract_async import AsyncContract
from floe_compute.testing.contract_base import ContractBase
from floe_compute.testing.contract_bound_values import BoundValueContract
from floe_compute.testing.contract_commit import CommitContract
from floe_compute.testing.contract_endings import EndingsContract
from floe_compute.testing.contract_load import LoadContract
from floe_compute.testing.contract_parameters import ParameterContract
from floe_compute.testing.contract_pool import PoolContract
from floe_compute.testing.contract_result_helpers import ResultHelpersContract
from floe_compute.testing.contract_results import ResultsContract
from floe_compute.testing.contract_retry import RetryContract
from floe_compute.testing.contract_secrets import SecretsContract
from floe_compute.testing.contract_sessions import SessionContract
from floe_compute.testing.contract_stopping import StoppingContract

__all__ = ["ComputePluginContract"]


class ComputePluginContract(
    ResultsContract,
    ResultHelpersContract,
    StoppingContract,
    PoolContract,
    EndingsContract,
    AsyncContract,
    SecretsContract,
    ArrowTypesContract,
    CommitContract,
    ParameterContract,
    BoundValueContract,
    LoadContract,
    SessionContract,
    RetryContract,
    ContractBase,
):
    """Inherit, provide ``compute_factory``, and override the SQL hooks your engine needs."""
