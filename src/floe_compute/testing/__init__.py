"""The behavioural contract every compute plugin passes, ours or a third party's.

Subclass :class:`ComputePluginContract` in a pytest module and provide the ``compute_factory``
fixture (and, where the engine's SQL differs, the query hooks)::

    class TestMyEngine(ComputePluginContract):
        @pytest.fixture
        def compute_factory(self):
            return lambda **overrides: create_plugin("myengine://...", **overrides)

``run_in_thread`` and ``wait_until_listed`` serve an engine's own tests of stopping queries.

Needs pytest (``pip install floe-compute[test]`` or your own test dependencies).
"""

from floe_compute.testing.contract import ComputePluginContract
from floe_compute.testing.threads import Outcome, run_in_thread, wait_until_listed

__all__ = ["ComputePluginContract", "Outcome", "run_in_thread", "wait_until_listed"]
