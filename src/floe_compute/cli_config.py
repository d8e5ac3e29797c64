"""``floe-compute config``: the manifest's JSON Schema, or the resolved configuration of a target.

Kept apart from ``cli.py`` (which only registers it) because it answers from
:mod:`floe_compute.reference`, the same source as the documentation's configuration reference.
"""

from __future__ import annotations

import argparse
import sys

from floe_compute.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: the CLI starts without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_config_command"]


def cmd_config(args: argparse.Namespace) -> int:
    # imported here: registering the command must not slow down every other command's start-up
    import json

    import yaml

    from floe_compute.reference import manifest_schema, resolved_config

    if args.schema:
        if args.url is not None:
            raise ConfigError("config --schema takes no TARGET: the schema covers every target")
        document: dict[str, Any] = manifest_schema()
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    if args.url is None and args.manifest is None:
        raise ConfigError(
            "config needs a TARGET (a URL, or a target name with --manifest), a --manifest, or --schema; "
            "e.g. floe-compute config local -m floe.yaml"
        )
    document = resolved_config(args.url, args.manifest)
    if args.json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0


def add_config_command(sub: Any) -> None:
    """Register ``config`` on the ``floe-compute`` subcommand parser."""
    config = sub.add_parser(
        "config",
        help="print a target's resolved configuration, or the manifest's JSON Schema",
        description=(
            "Print the configuration a target resolves to (every default filled in, secrets "
            "masked), or with --schema the JSON Schema of floe.yaml for editors."
        ),
    )
    config.add_argument(
        "url",
        metavar="TARGET",
        nargs="?",
        help="a URL such as duckdb:///warehouse.duckdb, or a target name with --manifest",
    )
    config.add_argument(
        "--manifest", "-m", metavar="FILE", help="a floe manifest (YAML); TARGET is then a target name"
    )
    config.add_argument("--schema", action="store_true", help="print the manifest's JSON Schema")
    config.add_argument("--json", action="store_true", help="print the configuration as JSON (default: YAML)")
    config.set_defaults(func=cmd_config, verbose=False)
