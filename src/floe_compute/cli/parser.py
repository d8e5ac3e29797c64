"""The command line: ``floe-compute COMMAND ...`` parsed into the command to run and its options."""

from __future__ import annotations

import argparse
import sys

from floe_compute.cli.commands import cmd_config, cmd_dbt_profile, cmd_health, cmd_plugins, cmd_query
from floe_compute.cli.load import add_load
from floe_compute.cli.output import WRITERS
from floe_compute.cli.runtime import PROG
from floe_compute.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["build_parser"]


def _seconds(text: str) -> float:
    """Seconds as the library takes them: finite, positive, at most 7 days. The error says how to
    write what was probably meant: no deadline (``0``, ``none``) or a unit (``5s``)."""
    from floe_compute.units import check_timeout

    try:
        value = check_timeout(text, "--timeout")
    except ConfigError as exc:
        message = str(exc).removeprefix("--timeout: ")
        if text.strip().lower() in ("0", "0.0", "none", "inf", "off", "never"):
            message += "; for no deadline, leave out --timeout (the target's timeouts.query, if any, applies)"
        else:
            message += "; write seconds as a plain number, such as 5 or 0.5 (not 5s)"
        raise argparse.ArgumentTypeError(message) from None
    assert value is not None
    return value


class _Version(argparse.Action):
    """``--version``, read from the installed distribution only when asked: its metadata costs
    ``--help`` and every usage error a third of their start-up time otherwise."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from floe_compute import __version__

        sys.stdout.write(f"{parser.prog} {__version__}\n")  # where argparse's own action prints it
        parser.exit()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``floe-compute`` parser: each subcommand's parsed arguments carry the command to run
    (``args.func``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Query, check and describe any SQL engine through floe-compute.",
        epilog="Exit status: 0 ok, 1 query/engine error, 2 usage/config error, 3 timeout, 130 interrupted.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    target = _target_options()
    _add_query(sub, target)
    add_load(sub, target)
    _add_health(sub, target)
    _add_dbt_profile(sub, target)
    _add_plugins(sub)
    _add_config(sub)
    return parser


def _target_options() -> argparse.ArgumentParser:
    """The options of every command that works on one target: its URL, or a manifest's target."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "url",
        metavar="URL",
        help="a URL such as duckdb:///warehouse.duckdb, or a target name with --manifest",
    )
    target.add_argument(
        "--manifest", "-m", metavar="FILE", help="a floe manifest (YAML); URL is then a target name"
    )
    target.add_argument(
        "--verbose", "-v", action="store_true", help="show floe-compute's log messages on stderr"
    )
    return target


def _add_query(sub: Subcommands, target: argparse.ArgumentParser) -> None:
    query = sub.add_parser(
        "query",
        parents=[target],
        help="run a statement and stream its rows to stdout",
        description="Run one statement and stream its rows to stdout as they arrive.",
    )
    query.add_argument(
        "sql", metavar="SQL", nargs="?", help="the statement; '-' reads it from stdin (or use --file)"
    )
    query.add_argument(
        "--file",
        metavar="FILE",
        help="read the statement from FILE ('-': stdin), as psql -f, duckdb -f and sqlite3 .read do",
    )
    query.add_argument(
        "--format",
        "-f",
        choices=sorted(WRITERS),
        default="table",
        help="output format (default: table). Unlike psql's -f FILE, -f is --format here, as it has "
        "been since the first release (scripts use -f csv); for a SQL file use --file",
    )
    query.add_argument(
        "--timeout",
        "-t",
        type=_seconds,
        metavar="S",
        help="cancel the query after S seconds (a number: 5, 0.5), counting execution and streaming; "
        "leave it out for the target's timeouts.query (no deadline unless the target sets one)",
    )
    query.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write to FILE instead of stdout (parquet needs a file or a pipe, not a terminal)",
    )
    query.add_argument(
        "--all",
        action="store_true",
        help="on a terminal, show every row of a table (default there: a screenful)",
    )
    query.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        default=None,
        help="rows fetched and written per batch (default: the engine's)",
    )
    query.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show rows and rows/s on stderr (default: when stderr is a terminal)",
    )
    query.set_defaults(func=cmd_query)


def _add_health(sub: Subcommands, target: argparse.ArgumentParser) -> None:
    health = sub.add_parser(
        "health",
        parents=[target],
        help="check that the engine answers",
        description="Ping the engine through the pool; exit 0 when healthy, 1 otherwise.",
    )
    health.add_argument("--json", action="store_true", help="print the status as JSON")
    health.add_argument("--timeout", "-t", type=_seconds, metavar="S", help="ping timeout")
    health.set_defaults(func=cmd_health)


def _add_dbt_profile(sub: Subcommands, target: argparse.ArgumentParser) -> None:
    profile = sub.add_parser(
        "dbt-profile",
        parents=[target],
        help="print a dbt profiles.yml for the target",
        description="Print a dbt profiles.yml for the same target.",
    )
    profile.add_argument("--profile", default="floe", help="the profile name (default: floe)")
    profile.add_argument(
        "--target", default=None, help="the dbt target name (default: the manifest target, else dev)"
    )
    profile.set_defaults(func=cmd_dbt_profile)


def _add_plugins(sub: Subcommands) -> None:
    plugins = sub.add_parser(
        "plugins",
        help="list the installed compute plugins",
        description="List the installed compute plugins and the URL schemes they claim.",
    )
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")
    plugins.set_defaults(func=cmd_plugins, verbose=False)


def _add_config(sub: Subcommands) -> None:
    """``config`` takes an optional TARGET (``--schema`` needs none), so not the target options."""
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
