"""The behavioural contract every compute plugin passes, ours or a third party's.

Subclass :class:`ComputePluginContract` in a pytest module and provide the ``compute_factory``
fixture (and, where the engine's SQL differs, the query hooks)::

    class TestMyEngine(ComputePluginContract):
        @pytest.fixture
        def compute_factory(self):
            return lambda **overrides: create_plugin("myengine://...", **overrides)

Needs pytest (``pip install floe-compute[test]`` or your own test dependencies).
"""

from floe_compute.testing.contract import ComputePluginContract

__all__ = ["ComputePluginContract"]
