"""``python -m floe_compute.cli``: the ``floe-compute`` command."""

from floe_compute.cli import run

run()
