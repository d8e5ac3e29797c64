"""The ``floe-compute`` command: run a query, check health, print a dbt profile, list plugins.

::

    floe-compute query URL ["SQL" | --file FILE] [--format table|csv|tsv|json|jsonl|parquet]
                      [--output FILE] [--all] [--timeout S] [--batch-size N]
    floe-compute health URL [--json]
    floe-compute dbt-profile URL [--profile NAME] [--target NAME]
    floe-compute plugins [--json]
    floe-compute config [TARGET] [--manifest FILE] [--json] | config --schema

``URL`` is a connection URL, or a target name when ``--manifest FILE`` is given. Results are
streamed: rows are written batch by batch as the engine delivers them, never collected first.
A ``--timeout`` covers the whole run, execution and streaming alike, as in the library.

Exit status: 0 success, 1 query or engine error (and ``health`` when not healthy, and a closed
stdout: ``>&-``), 2 usage or configuration error, 3 query timeout, 130 interrupted (Ctrl-C, also
during start-up; the running query is cancelled on the engine; a second Ctrl-C exits at once), 141
output pipe closed (as ``SIGPIPE``). Errors are one line on stderr (``floe-compute: error: ...``),
never a traceback.

``--format jsonl`` writes one JSON object per row. Values JSON cannot hold are written as ``null``
(a float NaN, Infinity or -Infinity); other non-JSON values (dates, decimals) as strings. CSV, TSV
and Parquet are written from Arrow batches by pyarrow's writers (see ``output.py``). Duplicate
column names are made unique in every format, as pandas does: ``SELECT 1 a, 2 a`` has columns ``a``
and ``a_1``.
"""

from __future__ import annotations

# only a few standard modules and the (light) errors at start: --help and usage errors answer
# before SQLAlchemy, pydantic or an engine is imported (nor typing, logging or json); the commands
# import what they use
import gc
import sys

from floe_compute.cli.output import WRITERS, unique_columns
from floe_compute.cli.parser import build_parser
from floe_compute.cli.runtime import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    PROG,
    Interrupts,
    error,
    failure,
    pause_collection,
    quiet_library,
    stdout_closed,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import NoReturn

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "PROG",
    "WRITERS",
    "build_parser",
    "main",
    "run",
    "unique_columns",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (the console script exits with it)."""
    try:
        if stdout_closed():
            error("standard output is closed; redirect it to a file or /dev/null instead")
            return EXIT_ERROR
        with Interrupts() as interrupts:
            parser = build_parser()
            args = parser.parse_args(argv)
            with quiet_library(bool(getattr(args, "verbose", False))):
                return _run(args, interrupts)
    except KeyboardInterrupt:  # during start-up: imports, argument parsing
        error("interrupted")
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, interrupts: Interrupts) -> int:
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        error(_interrupted(args))
        return EXIT_INTERRUPTED
    except Exception as exc:
        if interrupts.seen:
            error(_interrupted(args))
            return EXIT_INTERRUPTED
        return failure(exc)


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C did: a query that had started was cancelled on the engine before the exit."""
    if getattr(args, "query_started", False):
        return "interrupted; the query was cancelled on the engine"
    return "interrupted"


def run() -> NoReturn:
    """The ``floe-compute`` console script: :func:`main`, then exit.

    Start-up (imports, validating the config, creating the plugin) allocates hundreds of thousands
    of objects and frees almost none, so the garbage collector's passes over them are wasted: a
    tenth of a short query's run. It is paused until the plugin exists (:func:`.runtime.started`); a
    command that never creates one (``--help``, ``plugins``, ``config``) ends soon anyway.

    Before exiting, every object is moved out of the collector's sight (``gc.freeze``): the
    interpreter's final collections would otherwise walk all of SQLAlchemy, pydantic and the
    engine, a good part of a short command's run time, only to free memory the exit frees anyway.
    Everything else at exit still happens (``atexit`` handlers, flushing the streams).
    """
    pause_collection()
    code = main()
    gc.freeze()
    sys.exit(code)
