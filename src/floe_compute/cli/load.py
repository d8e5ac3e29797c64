"""``floe-compute load URL TABLE FILE``: a Parquet, CSV or Arrow IPC file (or stdin) into a table,
through ``load_arrow`` (the engine's native path), streaming: the file is never read whole, except
a Parquet file from stdin (Parquet needs to seek)."""

from __future__ import annotations

import argparse
import sys

from floe_compute.cli.commands import _plugin
from floe_compute.cli.progress import Progress, isatty
from floe_compute.cli.runtime import EXIT_OK, UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    import pyarrow as pa

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_load", "cmd_load"]

FORMATS = ("parquet", "csv", "arrow")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "arrow", ".ipc": "arrow"}
_SUFFIXES.update({".feather": "arrow", ".arrows": "arrow"})


def add_load(sub: Subcommands, target: argparse.ArgumentParser) -> None:
    load = sub.add_parser(
        "load",
        parents=[target],
        help="load a Parquet, CSV or Arrow IPC file into a table",
        description="Load a file into TABLE on the engine's native bulk path, all or nothing where "
        "the engine has transactions; prints the row count at the end.",
    )
    load.add_argument("table", metavar="TABLE", help="the table: name or schema.name")
    load.add_argument(
        "file", metavar="FILE", help="a .parquet, .csv or .arrow/.feather file; '-' reads stdin"
    )
    load.add_argument(
        "--mode", choices=("append", "create", "replace"), default="append", help="default: append"
    )
    load.add_argument(
        "--format", choices=FORMATS, help="the file's format (default: from its name or content)"
    )
    load.add_argument("--timeout", "-t", type=float, metavar="S", help="cancel the load after S seconds")
    load.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show rows and rows/s on stderr (default: when stderr is a terminal)",
    )
    load.set_defaults(func=cmd_load)


def cmd_load(args: argparse.Namespace) -> int:
    import pyarrow as pa

    reader = open_reader(args.file, args.format)
    show_progress = args.progress if args.progress is not None else isatty(sys.stderr)
    with _plugin(args) as compute:
        progress = Progress(sys.stderr, compute.running_queries).start() if show_progress else None
        batches = reader if progress is None else _counted(reader, progress)
        try:
            data = pa.RecordBatchReader.from_batches(reader.schema, batches)
            result = compute.load_arrow(args.table, data, mode=args.mode, timeout=args.timeout)
        finally:
            if progress is not None:
                progress.stop()
    print(f"{result.rows} rows loaded into {args.table} in {result.seconds:.2f}s")
    return EXIT_OK


def _counted(reader: pa.RecordBatchReader, progress: Progress) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        progress.rows += batch.num_rows
        yield batch


def open_reader(path: str, fmt: str | None) -> pa.RecordBatchReader:
    """A streaming reader of the file (or stdin) in ``fmt``, else the format its name or its first
    bytes say."""
    import pyarrow as pa

    if path == "-":
        stdin = sys.stdin.buffer
        head = stdin.peek(8)[:8] if hasattr(stdin, "peek") else b""  # not consumed
        source: Any = pa.PythonFile(stdin, mode="r")
    else:
        try:
            source = pa.OSFile(path)
        except (FileNotFoundError, OSError) as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        head = source.read(8)
        source.seek(0)
    fmt = fmt or _SUFFIXES.get(_suffix(path)) or _sniff(head)
    if fmt is None:
        raise UsageError(f"cannot tell the format of {path}: name it with --format ({', '.join(FORMATS)})")
    return _reader(source, fmt, seekable=path != "-")


def _suffix(path: str) -> str:
    dot = path.rfind(".")
    return path[dot:].lower() if dot > 0 else ""


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "arrow"
    return "csv" if head else None


def _reader(source: Any, fmt: str, *, seekable: bool) -> pa.RecordBatchReader:
    import pyarrow as pa

    if fmt == "csv":
        import pyarrow.csv as pacsv

        # an empty field is NULL, as dbt seeds read it
        options = pacsv.ConvertOptions(strings_can_be_null=True)
        reader: pa.RecordBatchReader = pacsv.open_csv(source, convert_options=options)
        return reader
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if not seekable:  # stdin: Parquet's footer is at its end
            source = pa.BufferReader(sys.stdin.buffer.read())
        parquet = pq.ParquetFile(source)
        return pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches())
    if seekable:
        try:
            file = pa.ipc.open_file(source)
        except pa.ArrowInvalid:  # the stream format (.arrows), not the file format
            source.seek(0)
        else:
            batches = (file.get_batch(i) for i in range(file.num_record_batches))
            return pa.RecordBatchReader.from_batches(file.schema, batches)
    stream: pa.RecordBatchReader = pa.ipc.open_stream(source)
    return stream
