"""What each ``floe-compute`` command does; each returns its exit status. Every command imports
what it uses when it runs, so that ``--help`` and the other commands do not pay for it."""

from __future__ import annotations

import argparse
import contextlib
import sys

from floe_compute.cli.output import BINARY_FORMATS, WRITERS, unique_columns
from floe_compute.cli.progress import Progress, isatty
from floe_compute.cli.runtime import EXIT_ERROR, EXIT_OK, UsageError, started
from floe_compute.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TextIO

    from floe_compute.plugin import ComputePlugin
    from floe_compute.result import QueryResult

__all__ = ["cmd_config", "cmd_dbt_profile", "cmd_health", "cmd_plugins", "cmd_query"]


def _plugin(args: argparse.Namespace) -> ComputePlugin:
    from floe_compute.registry import create_plugin

    target: str = args.url
    if args.manifest is not None:
        plugin = create_plugin(target, manifest=args.manifest)
    else:
        plugin = create_plugin(target)
    started()
    return plugin


def _read_sql(sql: str | None, file: str | None) -> str:
    """The statement: the SQL argument, ``-`` (stdin) or ``--file``; a SQL argument that names an
    existing file (``floe-compute query URL q.sql``) gets a hint instead of a syntax error."""
    import os

    if sql is not None and file is not None:
        raise UsageError("give either SQL or --file FILE, not both")
    if file is not None:
        if file == "-":
            sql = sys.stdin.read()
        else:
            try:
                with open(file, encoding="utf-8") as handle:
                    sql = handle.read()
            except OSError as exc:
                raise UsageError(f"--file {file}: cannot read it ({exc.strerror or exc})") from None
    elif sql == "-":
        sql = sys.stdin.read()
    elif sql is not None and not any(c.isspace() for c in sql.strip()) and os.path.isfile(sql):
        raise UsageError(f"{sql!r} is a file, not a statement; to run the SQL in it: --file {sql}")
    if sql is None:
        raise UsageError("no statement: give SQL, '-' (stdin) or --file FILE")
    if not sql.strip():
        raise UsageError("the SQL statement is empty")
    return sql


def _page(args: argparse.Namespace, out: TextIO) -> int | None:
    """Rows a table shows: a screenful on a terminal (unless ``--all``), otherwise every row."""
    if args.format != "table" or args.all or not isatty(out):
        return None
    import shutil

    return max(10, shutil.get_terminal_size().lines - 4)


def _open_output(args: argparse.Namespace) -> TextIO:
    if args.output is None or args.output == "-":
        if args.format in BINARY_FORMATS and isatty(sys.stdout):
            raise UsageError(f"{args.format} is binary: write it to a file with --output FILE")
        return sys.stdout
    try:
        return open(args.output, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"--output {args.output}: cannot write it ({exc.strerror or exc})") from None


def _batches(result: QueryResult, arrow: bool, size: int | None) -> Iterator[Any]:
    """The result as Arrow record batches (for pyarrow's writers) or as row batches."""
    if not result.columns:
        return
    if arrow:
        yield from result.arrow_batches(size)
        return
    while rows := result.fetchmany(size):
        yield rows


def cmd_query(args: argparse.Namespace) -> int:
    sql = _read_sql(args.sql, args.file)
    out = _open_output(args)
    try:
        return _query(args, sql, out)
    finally:
        if out is not sys.stdout:
            out.close()


def _query(args: argparse.Namespace, sql: str, out: TextIO) -> int:
    show_progress = args.progress if args.progress is not None else isatty(sys.stderr)
    with _plugin(args) as compute:
        # started before execute(), so a long-running statement shows it is alive before any row
        running = compute.running_queries
        progress = Progress(sys.stderr, running).start() if show_progress else None
        # Rows and the progress line share the screen only when both go to the terminal: then the
        # line is erased before each batch, under the lock. Otherwise the two never wait on each
        # other, and the line keeps moving while a slow reader holds up stdout.
        shared = progress if progress is not None and progress.tty and isatty(out) else None
        lock = shared.lock if shared is not None else contextlib.nullcontext()
        try:
            args.query_started = True  # Ctrl-C from here on cancels a query on the engine
            with compute.execute(sql, timeout=args.timeout, batch_size=args.batch_size) as result:
                writer = WRITERS[args.format](out, unique_columns(result.columns), _page(args, out))
                try:
                    for batch in _batches(result, writer.arrow, args.batch_size):
                        with lock:
                            if shared is not None:
                                shared.clear()
                            wanted = writer.batch(batch)
                            writer.flush()
                        if progress is not None:
                            progress.rows = result.rowcount
                        if not wanted:  # a full page: the rest is not read
                            break
                    with lock:
                        if shared is not None:
                            shared.clear()
                        writer.finish(result.rowcount)
                        writer.flush()
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
