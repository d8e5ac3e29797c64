"""The contract suite: secrets never in a repr, a dump, a health status or an error."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from floe_compute import (
    ComputeError,
    ComputePlugin,
    HealthState,
)
from floe_compute.testing.contract_base import ContractBase, Factory

__all__ = ["SecretsContract"]


class SecretsContract(ContractBase):
    """Secrets never in a repr, a dump, a health status or an error."""

    # -- secrets ----------------------------------------------------------------------------

    #: A secret value the suite configures and binds, and then looks for everywhere it must not be.
    secret = "Contract-S3cret-9f1c"

    def secret_overrides(self) -> dict[str, Any]:
        """Overrides that give the plugin a secret (default: ``password``); an engine whose
        password must be right overrides this with a secret it can accept."""
        return {"password": self.secret}

    def test_secrets_never_in_repr_dumps_or_health(self, make_plugin: Factory) -> None:
        plugin = make_plugin(**self.secret_overrides())
        assert self.secret in plugin.config.secrets  # the guard below is not vacuous
        status = plugin.health_check()
        shown = [
            repr(plugin),
            str(plugin),
            repr(plugin.config),
            str(plugin.config),
            plugin.config.model_dump_json(),
            str(plugin.config.model_dump()),
            plugin.pool_name,
            repr(status),
            status.message,
        ]
        for text in shown:
            assert self.secret not in text

    def test_errors_are_compute_errors(self, plugin: ComputePlugin) -> None:
        for sql in ("SELECT * FROM contract_missing", "SELEC"):
            with pytest.raises(ComputeError):
                plugin.execute(sql)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert plugin.health_check().status is HealthState.HEALTHY
