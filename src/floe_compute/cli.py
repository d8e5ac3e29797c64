"""The ``floe-compute`` command: run a query, check health, print a dbt profile, list plugins.

::

    floe-compute query URL "SQL" [--format table|csv|jsonl] [--timeout S] [--batch-size N]
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
(a float NaN, Infinity or -Infinity); other non-JSON values (dates, decimals) as strings. Duplicate
column names are made unique in every format, as pandas does: ``SELECT 1 a, 2 a`` has columns ``a``
and ``a_1``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

# only a few standard modules and the (light) errors at start: --help and usage errors answer
# before SQLAlchemy, pydantic or an engine is imported (nor typing, logging or json); the commands
# import what they use
from floe_compute.errors import ComputeError, ConfigError, QueryTimeoutError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from typing import Any, NoReturn, TextIO

    from floe_compute.plugin import ComputePlugin

__all__ = ["main", "run"]

PROG = "floe-compute"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

TABLE_MAX_WIDTH = 60
"""A table column is at most this wide; longer values are printed in full and overflow it."""


class _UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


# -- output formats ---------------------------------------------------------------------------


class _Writer:
    """Writes rows to a text stream, one batch at a time."""

    def __init__(self, out: TextIO, columns: list[str]) -> None:
        self.out = out
        self.columns = columns

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def finish(self, total: int) -> None:
        """Called after the last batch of a complete result."""


class _CsvWriter(_Writer):
    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        import csv

        self._csv = csv.writer(out, lineterminator="\n")
        if columns:
            self._csv.writerow(columns)

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._csv.writerows(rows)


class _JsonlWriter(_Writer):
    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        import json

        self._dumps = json.dumps

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        columns = self.columns
        dumps = self._dumps
        self.out.write("".join(_json_line(dumps, dict(zip(columns, row, strict=False))) for row in rows))


def _json_line(dumps: Callable[..., str], record: dict[str, Any]) -> str:
    """One JSON object: strict JSON, so NaN and the infinities (which it cannot hold) become null."""
    try:
        return dumps(record, default=str, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:  # rare: only a row holding a non-finite float pays for the walk
        return dumps(_finite(record), default=str, ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def unique_columns(names: Sequence[str]) -> list[str]:
    """Column names made unique as pandas does: the second ``a`` is ``a_1``, the third ``a_2``."""
    seen: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, n = name, 0
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


class _TableWriter(_Writer):
    """A simple aligned table: column widths come from the header and the first batch.

    A later value wider than its column is printed in full (that line is then not aligned); a
    column is never wider than ``TABLE_MAX_WIDTH`` unless a value needs it. Numbers are
    right-aligned, NULL is shown as ``NULL``, and a ``(N rows)`` footer ends a complete result.
    """

    def __init__(self, out: TextIO, columns: list[str]) -> None:
        super().__init__(out, columns)
        self._widths: list[int] | None = None
        self._numeric: list[bool] = []

    @staticmethod
    def _cell(value: Any) -> str:
        if value is None:
            return "NULL"
        text = value if isinstance(value, str) else str(value)
        return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")

    def _line(self, cells: Sequence[str], right: Sequence[bool]) -> str:
        assert self._widths is not None
        parts = [
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, self._widths, right, strict=False)
        ]
        return "  ".join(parts).rstrip() + "\n"

    def _start(self, rows: Sequence[Sequence[str]], raw: Sequence[tuple[Any, ...]]) -> None:
        from decimal import Decimal

        widths = [len(c) for c in self.columns]
        for cells in rows:
            for i, cell in enumerate(cells):
                if len(cell) > widths[i]:
                    widths[i] = len(cell)
        self._widths = [
            max(len(c), min(w, TABLE_MAX_WIDTH)) for c, w in zip(self.columns, widths, strict=True)
        ]
        numeric = []
        for i in range(len(self.columns)):
            values = [row[i] for row in raw if row[i] is not None]
            numeric.append(
                bool(values)
                and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values)
            )
        self._numeric = numeric
        self.out.write(self._line(self.columns, [False] * len(self.columns)))
        self.out.write(self._line(["-" * w for w in self._widths], [False] * len(self.columns)))

    def batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        cells = [[self._cell(v) for v in row] for row in rows]
        if self._widths is None:
            self._start(cells, rows)
        self.out.write("".join(self._line(c, self._numeric) for c in cells))

    def finish(self, total: int) -> None:
        if not self.columns:
            self.out.write("(statement executed, no result set)\n")
            return
        if self._widths is None:
            self._start([], [])
        self.out.write(f"({total:,} row{'' if total == 1 else 's'})\n")


WRITERS: dict[str, type[_Writer]] = {"table": _TableWriter, "csv": _CsvWriter, "jsonl": _JsonlWriter}


# -- progress ---------------------------------------------------------------------------------


def _rate(rows: int, seconds: float) -> str:
    per_second = rows / seconds if seconds > 0 else 0.0
    return f"{rows:,} rows  {per_second:,.0f} rows/s  {seconds:.1f}s"


class _Progress:
    """A rows and rows/s line on stderr, from a background thread.

    It first appears after one second, then updates at most every 0.5 s. On a terminal it is one
    line redrawn in place and erased at the end (and before each batch written to stdout, so rows
    on the same terminal are not mixed with it); elsewhere (``--progress`` into a file) each update
    is its own line.
    """

    FIRST = 1.0
    EVERY = 0.5

    def __init__(self, err: TextIO, running: Any = None) -> None:
        self._err = err
        self._running = running
        self.tty = _isatty(err)
        self.lock = threading.Lock()
        self.rows = 0
        self._shown = False
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floe-compute-progress", daemon=True)

    def start(self) -> _Progress:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._stop.wait(self.FIRST):
            return
        while True:
            with self.lock:
                if self._stop.is_set():
                    return
                self._draw()
            if self._stop.wait(self.EVERY):
                return

    def _draw(self) -> None:
        if not self.rows and self._running is not None and not self._running():
            return  # not started on the engine yet (connecting, loading extensions)
        line = _rate(self.rows, time.monotonic() - self._started)
        try:
            if self.tty:
                self._err.write(f"\r{line}\x1b[K")
                self._shown = True
            else:
                self._err.write(line + "\n")
            self._err.flush()
        except (OSError, ValueError):  # stderr went away; progress is best effort
            self._stop.set()

    def clear(self) -> None:
        """Erase the line (the caller holds ``lock``)."""
        if self._shown:
            with contextlib.suppress(OSError, ValueError):
                self._err.write("\r\x1b[K")
                self._err.flush()
            self._shown = False

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.clear()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- commands ---------------------------------------------------------------------------------


def _plugin(args: argparse.Namespace) -> ComputePlugin:
    from floe_compute.registry import create_plugin

    target: str = args.url
    if args.manifest is not None:
        plugin = create_plugin(target, manifest=args.manifest)
    else:
        plugin = create_plugin(target)
    _started()
    return plugin


def _read_sql(sql: str) -> str:
    if sql == "-":
        sql = sys.stdin.read()
    if not sql.strip():
        raise _UsageError("the SQL statement is empty")
    return sql


def cmd_query(args: argparse.Namespace) -> int:
    sql = _read_sql(args.sql)
    out: TextIO = sys.stdout
    show_progress = args.progress if args.progress is not None else _isatty(sys.stderr)
    with _plugin(args) as compute:
        # started before execute(), so a long-running statement shows it is alive before any row
        running = compute.running_queries
        progress = _Progress(sys.stderr, running).start() if show_progress else None
        # Rows and the progress line share the screen only when both go to the terminal: then the
        # line is erased before each batch, under the lock. Otherwise the two never wait on each
        # other, and the line keeps moving while a slow reader holds up stdout.
        shared = progress if progress is not None and progress.tty and _isatty(out) else None
        lock = shared.lock if shared is not None else contextlib.nullcontext()
        try:
            with compute.execute(sql, timeout=args.timeout, batch_size=args.batch_size) as result:
                writer = WRITERS[args.format](out, unique_columns(result.columns))
                try:
                    while rows := result.fetchmany(args.batch_size):
                        with lock:
                            if shared is not None:
                                shared.clear()
                            writer.batch(rows)
                            out.flush()
                        if progress is not None:
                            progress.rows = result.rowcount
                    with lock:
                        if shared is not None:
                            shared.clear()
                        writer.finish(result.rowcount)
                        out.flush()
                except BaseException:
                    # stop the query on the engine before the connection goes back to the pool
                    result.cancel()
                    raise
        finally:
            if progress is not None:
                progress.stop()
    return EXIT_OK


def _health_dict(status: Any) -> dict[str, Any]:
    import dataclasses

    return {
        "status": str(status.status),
        "healthy": status.healthy,
        "latency_ms": round(status.latency_ms, 3),
        "message": status.message,
        "checked_at": status.checked_at.isoformat(),
        "pool": dataclasses.asdict(status.pool) if status.pool is not None else None,
    }


def cmd_health(args: argparse.Namespace) -> int:
    compute = _plugin(args)
    try:
        # health_check never raises: an engine that cannot be reached is reported as unhealthy
        status = compute.health_check(timeout=args.timeout)
    finally:
        compute.disconnect()
    if args.json:
        import json

        print(json.dumps(_health_dict(status), indent=2, default=str))
    else:
        print(f"status:  {status.status}")
        print(f"target:  {compute.pool_name}")
        print(f"latency: {status.latency_ms:.1f} ms")
        print(f"message: {status.message}")
        pool = status.pool
        if pool is not None:
            print(
                f"pool:    size={pool.size} max={pool.max} idle={pool.idle} in_use={pool.in_use} "
                f"waiting={pool.waiting} checkouts={pool.checkouts} connects={pool.connects} "
                f"timeouts={pool.timeouts}"
            )
    return EXIT_OK if status.healthy else EXIT_ERROR


def cmd_dbt_profile(args: argparse.Namespace) -> int:
    from floe_compute.dbt import render_profiles

    compute = _plugin(args)  # not connected: rendering the profile needs only the configuration
    target = args.target or compute.config.name or "dev"
    sys.stdout.write(render_profiles(compute.dbt_profile(profile=args.profile, target=target)))
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from floe_compute.registry import get_plugin_class, list_plugins

    plugins = [(name, get_plugin_class(name)) for name in list_plugins()]
    if args.json:
        listing = [
            {"name": name, "schemes": list(cls.schemes), "class": f"{cls.__module__}.{cls.__qualname__}"}
            for name, cls in plugins
        ]
        import json

        print(json.dumps(listing, indent=2))
        return EXIT_OK
    if not plugins:
        print("no compute plugins installed")
        return EXIT_OK
    width = max(len(name) for name, _ in plugins)
    for name, cls in plugins:
        schemes = ", ".join(f"{s}://" for s in cls.schemes)
        print(f"{name.ljust(width)}  {schemes}  ({cls.__module__}.{cls.__qualname__})")
    return EXIT_OK


# -- argument parsing -------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """Seconds as the library takes them: finite, positive, at most 7 days."""
    from floe_compute.config import check_timeout

    try:
        value = check_timeout(text, "--timeout")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--timeout: ")) from None
    assert value is not None
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Query, check and describe any SQL engine through floe-compute.",
        epilog="Exit status: 0 ok, 1 query/engine error, 2 usage/config error, 3 timeout, 130 interrupted.",
    )
    from floe_compute import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    query = sub.add_parser(
        "query",
        parents=[target],
        help="run a statement and stream its rows to stdout",
        description="Run one statement and stream its rows to stdout as they arrive.",
    )
    query.add_argument("sql", metavar="SQL", help="the statement; '-' reads it from stdin")
    query.add_argument(
        "--format", "-f", choices=sorted(WRITERS), default="table", help="output format (default: table)"
    )
    query.add_argument(
        "--timeout",
        "-t",
        type=_seconds,
        metavar="S",
        help="cancel the query after S seconds, counting execution and streaming "
        "(default: the target's timeouts.query)",
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

    health = sub.add_parser(
        "health",
        parents=[target],
        help="check that the engine answers",
        description="Ping the engine through the pool; exit 0 when healthy, 1 otherwise.",
    )
    health.add_argument("--json", action="store_true", help="print the status as JSON")
    health.add_argument("--timeout", "-t", type=_seconds, metavar="S", help="ping timeout")
    health.set_defaults(func=cmd_health)

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

    plugins = sub.add_parser(
        "plugins",
        help="list the installed compute plugins",
        description="List the installed compute plugins and the URL schemes they claim.",
    )
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")
    plugins.set_defaults(func=cmd_plugins, verbose=False)

    from floe_compute.cli_config import add_config_command

    add_config_command(sub)
    return parser


# -- entry point ------------------------------------------------------------------------------


def _error(message: str) -> None:
    """One line on stderr; stderr failing as well is ignored."""
    line = " ".join(message.split())
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{PROG}: error: {line}\n")
        sys.stderr.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def _quiet_library(verbose: bool) -> Iterator[None]:
    """Keep the library's log lines and Python warnings off the terminal unless ``--verbose``.

    Errors reach the user as the one-line message; the structured log record of a timeout or
    SQLAlchemy's warning about a dialect's statement cache would only repeat or clutter it.
    Everything is restored afterwards, so ``main()`` can be called in-process.
    """
    import logging

    logger = logging.getLogger("floe_compute")
    saved = (logger.propagate, logger.level)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.propagate = False
    with warnings.catch_warnings():
        if not verbose and not sys.warnoptions:
            warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate, logger.level = saved


class _Interrupts:
    """Remembers a Ctrl-C: DuckDB turns SIGINT into its own "Query interrupted" error, which must
    still end the command as interrupted (130), not as a failed query."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.seen:  # the second Ctrl-C: the user does not want to wait for the clean-up
            _error("interrupted")
            os._exit(EXIT_INTERRUPTED)
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.default_int_handler:  # not when SIGINT is ignored or handled
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (the console script exits with it)."""
    try:
        if _stdout_closed():
            _error("standard output is closed; redirect it to a file or /dev/null instead")
            return EXIT_ERROR
        with _Interrupts() as interrupts:
            parser = build_parser()
            args = parser.parse_args(argv)
            with _quiet_library(bool(getattr(args, "verbose", False))):
                return _run(args, interrupts)
    except KeyboardInterrupt:  # during start-up: imports, argument parsing
        _error("interrupted")
        return EXIT_INTERRUPTED


def _stdout_closed() -> bool:
    """``floe-compute ... >&-``: Python starts without a ``sys.stdout``. Descriptor 1 is then
    pointed at /dev/null, so that no file the engine opens can take its number and receive rows."""
    if sys.stdout is not None:
        return False
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 1:
            os.dup2(devnull, 1)
            os.close(devnull)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return True


def _run(args: argparse.Namespace, interrupts: _Interrupts) -> int:
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if interrupts.seen:
            _error("interrupted")
            return EXIT_INTERRUPTED
        return _failure(exc)


def _failure(exc: Exception) -> int:
    """Report a failure in one line (never a traceback) and return its exit status."""
    if isinstance(exc, BrokenPipeError):  # the reader went away (``| head``): nothing to report
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, ComputeError | _UsageError):
        _error(str(exc))
        if isinstance(exc, QueryTimeoutError):
            return EXIT_TIMEOUT
        return EXIT_USAGE if isinstance(exc, ConfigError | _UsageError) else EXIT_ERROR
    _error(f"unexpected {type(exc).__name__}: {exc}")
    return EXIT_ERROR


_collection_paused = False


def _started() -> None:
    """Start-up is over (the plugin exists): the garbage collector resumes if :func:`run` paused
    it. What start-up built lives until exit, so it is first frozen (``gc.freeze``): the
    collections a long result triggers then do not walk all of SQLAlchemy and pydantic either."""
    global _collection_paused
    if _collection_paused:
        _collection_paused = False
        gc.freeze()
        gc.enable()


def run() -> NoReturn:
    """The ``floe-compute`` console script: :func:`main`, then exit.

    Start-up (imports, validating the config, creating the plugin) allocates hundreds of thousands
    of objects and frees almost none, so the garbage collector's passes over them are wasted: a
    tenth of a short query's run. It is paused until the plugin exists (:func:`_started`); a
    command that never creates one (``--help``, ``plugins``, ``config``) ends soon anyway.

    Before exiting, every object is moved out of the collector's sight (``gc.freeze``): the
    interpreter's final collections would otherwise walk all of SQLAlchemy, pydantic and the
    engine, a good part of a short command's run time, only to free memory the exit frees anyway.
    Everything else at exit still happens (``atexit`` handlers, flushing the streams).
    """
    global _collection_paused
    if gc.isenabled():
        gc.disable()
        _collection_paused = True
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
