"""Every Python and shell block of README.md and docs/ runs as written: one test per block.

The conventions (also in docs/contributing.md):

* A ``python`` block runs as a script, a ``bash``/``sh``/``shell`` block with ``bash -euo pipefail``,
  each in a fresh temporary directory, with this project's environment activated (its ``bin`` on
  ``PATH``) and ``.venv`` linked into the directory, so ``.venv/bin/floe-compute`` works as well.
* Comment lines at the top of a block ask for what it needs: ``# needs: postgres`` (and others, see
  ``RESOURCES``); several are separated by commas.
* A block of any language whose first line is ``# file: NAME`` is a file; another block on the
  same page that says ``# needs: NAME`` finds it in its directory.
* ``# not run: <why>`` leaves a block out; the reason is shown to the reader too. Other languages
  (``yaml``, ``text``, ``console``...) are never run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# the session fixtures a block may ask for, shared with the integration tests
from iceberg_fixtures import (  # noqa: F401
    client_secret,
    extension_dir,
    iceberg_table,
    rest_catalog,
    s3_rest_catalog,
    s3_server,
    s3_table,
)
from postgres_fixtures import pg_server, pg_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT = 240.0

LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_DIRECTIVE = re.compile(r"^#\s*(?P<kind>needs|not run|file):\s*(?P<value>.*?)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    language: str
    code: str
    needs: list[str] = field(default_factory=list)
    file: str | None = None
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def sources() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(path: Path) -> Iterator[Block]:
    """The fenced blocks of a Markdown file, indented ones (in list items) included."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or not match["info"].strip():
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = match["info"].split()[0].lower()
        start = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        block = Block(path, start, language, "\n".join(body) + "\n")
        for text in body:
            directive = _DIRECTIVE.match(text.strip())
            if directive is None:
                break
            kind, value = directive["kind"], directive["value"]
            if kind == "needs":
                block.needs += [n.strip() for n in value.split(",") if n.strip()]
            elif kind == "file":
                block.file = value
            else:
                block.not_run = value
        yield block


BLOCKS = [block for path in sources() for block in parse(path)]
FILES = {(b.path, b.file): b for b in BLOCKS if b.file}
RUNNABLE = [b for b in BLOCKS if b.language in LANGUAGES and b.not_run is None and b.file is None]


# -- what a block can ask for -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``PG_URL``: a PostgreSQL URL (with its password) of a schema of the block's own."""
    return {"PG_URL": request.getfixturevalue("pg_url")}


def _warehouse(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``warehouse.duckdb`` in the working directory, with the quick start's ``orders`` table."""
    import duckdb

    with duckdb.connect(str(cwd / "warehouse.duckdb")) as con:
        con.execute(
            "CREATE TABLE orders AS SELECT i AS order_id, i % 100 AS customer_id, "
            "DATE '2024-01-01' + (i % 31)::INTEGER AS order_date, "
            "round((i * 7919 % 10000) / 100.0, 2)::DECIMAL(10, 2) AS amount FROM range(10000) t(i)"
        )
    return {}


def _extension_cache(request: pytest.FixtureRequest) -> dict[str, str]:
    """The default extension directory lives under ``XDG_CACHE_HOME``: one per xdist worker, so
    two processes never install into one directory at once."""
    from iceberg_fixtures import require_extension_packages

    require_extension_packages()
    return {"XDG_CACHE_HOME": str(request.getfixturevalue("extension_dir"))}


def _iceberg(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``ICEBERG_METADATA``: the current ``*.metadata.json`` of a table (``id``, ``category``,
    ``amount``, ``ts``; 3000 rows, then 2000 more); ``ICEBERG_FIRST_SNAPSHOT``: its first snapshot."""
    table = request.getfixturevalue("iceberg_table")
    return _extension_cache(request) | {
        "ICEBERG_METADATA": table.metadata_location,
        "ICEBERG_FIRST_SNAPSHOT": str(table.first_snapshot_id),
    }


def _iceberg_rest(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``LAKE_ENDPOINT`` and ``LAKE_CLIENT_SECRET`` of an Iceberg REST catalog (OAuth2 client id
    ``floe``, warehouse ``warehouse``) that serves the same table as ``ns.events``."""
    catalog = request.getfixturevalue("rest_catalog")
    return _extension_cache(request) | {
        "LAKE_ENDPOINT": catalog.url,
        "LAKE_CLIENT_SECRET": request.getfixturevalue("client_secret"),
    }


def _iceberg_s3(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """The same table on S3 (moto): ``S3_ENDPOINT``, ``S3_KEY_ID``, ``S3_SECRET_KEY``; its
    ``ICEBERG_S3_METADATA``; and ``LAKE_ENDPOINT``/``LAKE_CLIENT_SECRET`` of a REST catalog over it."""
    server = request.getfixturevalue("s3_server")
    catalog = request.getfixturevalue("s3_rest_catalog")
    return _extension_cache(request) | {
        "S3_ENDPOINT": server.endpoint,
        "S3_KEY_ID": server.keys.key_id,
        "S3_SECRET_KEY": server.keys.secret_key,
        "ICEBERG_S3_METADATA": request.getfixturevalue("s3_table").metadata_location,
        "LAKE_ENDPOINT": catalog.url,
        "LAKE_CLIENT_SECRET": request.getfixturevalue("client_secret"),
    }


def _metrics_port(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``METRICS_PORT``: a free port for a metrics endpoint."""
    return {"METRICS_PORT": str(_free_port())}


class _Collector:
    """A stand-in OpenTelemetry Collector: accepts OTLP/HTTP posts and remembers their paths."""

    def __init__(self) -> None:
        import http.server
        import threading

        received = self.received = []  # type: list[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _otlp_collector(request: pytest.FixtureRequest, cwd: Path) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_ENDPOINT``: a collector that must receive the block's spans."""
    collector = _Collector()

    def check() -> None:
        collector.close()
        assert "/v1/traces" in collector.received, f"no spans exported: {collector.received}"

    request.node.stash[_AFTER] = [*request.node.stash.get(_AFTER, []), check]
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server.server_address[1]}"}


_AFTER = pytest.StashKey[list[Callable[[], None]]]()

RESOURCES: dict[str, Callable[[pytest.FixtureRequest, Path], dict[str, str]]] = {
    "postgres": _postgres,
    "warehouse": _warehouse,
    "iceberg": _iceberg,
    "iceberg-rest": _iceberg_rest,
    "iceberg-s3": _iceberg_s3,
    "metrics-port": _metrics_port,
    "otlp-collector": _otlp_collector,
}
MARKS = {
    "postgres": [pytest.mark.postgres],
    "iceberg": [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")],
    "iceberg-rest": [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")],
    "iceberg-s3": [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")],
}


def _params() -> list[Any]:
    params = []
    for block in RUNNABLE:
        marks: list[Any] = []
        for need in block.needs:
            marks += MARKS.get(need, [])
        if "dbt" in block.code:
            marks.append(pytest.mark.dbt)
        params.append(pytest.param(block, id=block.where, marks=marks))
    return params


def test_the_docs_have_runnable_blocks() -> None:
    """Guards the parser: a change that found no blocks would pass every other test vacuously."""
    assert (ROOT / "docs" / "index.md").exists()
    assert len(RUNNABLE) >= 20
    languages = {LANGUAGES[b.language] for b in RUNNABLE}
    assert languages == {"python", "bash"}


def test_every_need_is_known() -> None:
    unknown = [
        f"{b.where}: {need}"
        for b in BLOCKS
        for need in b.needs
        if need not in RESOURCES and (b.path, need) not in FILES
    ]
    assert unknown == [], f"unknown '# needs:' (resources: {sorted(RESOURCES)}, or a '# file:' block)"
    assert all(b.not_run for b in BLOCKS if b.not_run is not None), "'# not run:' needs a reason"


@pytest.mark.parametrize("block", _params())
def test_block_runs_as_written(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(VENV_BIN.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    env |= {
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PYTHONUNBUFFERED": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    }
    for need in block.needs:
        if (block.path, need) in FILES:
            (cwd / need).write_text(FILES[(block.path, need)].code)
        else:
            env |= RESOURCES[need](request, cwd)

    if block.language in ("python", "py"):
        script = cwd.parent / "snippet.py"
        command = [sys.executable, str(script)]
    else:
        script = cwd.parent / "snippet.sh"
        command = [shutil.which("bash") or "/bin/bash", "-euo", "pipefail", str(script)]
    script.write_text(block.code)
    # its own session, so a block that hangs is stopped with everything it started
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
        except BaseException as exc:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            pytest.fail(f"{block.where}: stopped after {RUN_TIMEOUT:.0f} s\n{block.code}\n{stdout}\n{stderr}")
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if done.returncode != 0:
        pytest.fail(
            f"{block.where} ({block.language}) exited {done.returncode}\n--- block\n{block.code}"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    for check in request.node.stash.get(_AFTER, []):
        check()
