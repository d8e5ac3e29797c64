"""Hypothesis profiles: ``ci`` (the default, bounded run time) and ``thorough`` (for a local hunt:
``HYPOTHESIS_PROFILE=thorough make test``). No example database is written into the repository."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,  # a loaded machine is slow, not wrong; hangs are caught by pytest-timeout
    database=None,
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
