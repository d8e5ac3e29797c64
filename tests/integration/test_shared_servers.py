"""A server the xdist workers share stops when they are gone, even killed (``fixtures.shared``).

A worker killed by the OOM killer or a CI timeout runs no cleanup; the shared server (hundreds of
MB) must not outlive it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from fixtures.bigquery import BigQueryEmulator, EmulatorNotInstalledError
from fixtures.shared import process_identity
from fixtures.snowflake import FakesnowNotInstalledError, find_fakesnow

from support import require

ROOT = Path(__file__).resolve().parents[2]

SERVERS = {
    "fakesnow": "from fixtures.snowflake import shared_server as shared",
    "bqemulator": "from fixtures.bigquery import shared_emulator as shared",
}


def require_installed(name: str) -> None:
    try:
        find_fakesnow() if name == "fakesnow" else BigQueryEmulator()
    except (FakesnowNotInstalledError, EmulatorNotInstalledError) as exc:
        require(False, str(exc))


def wait_until_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_identity(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SERVERS), ids=list(SERVERS))
def test_a_shared_server_stops_when_its_only_user_is_killed(name: str, tmp_path: Path) -> None:
    require_installed(name)
    directory = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    user_code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        {SERVERS[name]}
        with shared(Path({str(directory)!r})) as server:
            print("ready", flush=True)
            time.sleep(3600)
        """
    )
    user = subprocess.Popen(
        [sys.executable, "-c", user_code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert user.stdout is not None
    try:
        line = user.stdout.readline().strip()  # the server answers when this comes
        assert line == "ready", user.stderr.read() if user.stderr else ""
        state = json.loads((directory / "server.json").read_text())
        server_pid = state["details"]["pid"]
        assert process_identity(server_pid) is not None
        user.kill()  # SIGKILL: no finally, no atexit
        user.wait(30)
        # the launcher looks every WATCH_INTERVAL_S; stopping takes fakesnow/bqemulator seconds
        assert wait_until_gone(server_pid, timeout=60), f"{name} (pid {server_pid}) outlived its user"
        assert wait_until_gone(int(state["launcher"].split(":")[0]), timeout=60)
        assert not directory.exists()  # the launcher removed the run's files as it ended
    finally:
        if user.poll() is None:
            user.kill()
            user.wait()
        if "server_pid" in locals() and process_identity(server_pid) is not None:
            os.killpg(server_pid, signal.SIGKILL)  # only when the test failed: leave nothing


@pytest.mark.slow
def test_the_server_lives_while_any_user_does_and_stops_with_the_last(tmp_path: Path) -> None:
    require_installed("fakesnow")
    from fixtures.snowflake import shared_server

    directory = tmp_path / "run"
    user_code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from fixtures.snowflake import shared_server
        with shared_server(Path({str(directory)!r})) as server:
            print(server.pid, flush=True)
            sys.stdin.readline()  # until the test says so
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", user_code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None and other.stdout is not None
    try:
        server_pid = int(other.stdout.readline())
        with shared_server(directory) as server:
            assert server.pid == server_pid  # the same server, not a second one
            other.stdin.write("\n")
            other.stdin.flush()
            assert other.wait(60) == 0
            assert server.running  # the other user left; this one still uses it
        # the last user out stops it before leaving, and the run's files go with it
        assert process_identity(server_pid) is None
        assert not directory.exists()
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_a_server_that_fails_to_start_is_reported_when_it_exits_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixtures.shared import START_TIMEOUT_S
    from fixtures.snowflake import shared_server

    # a "fakesnow" that exits at once, as one that cannot bind its port or import its modules does
    script = tmp_path / "fakesnow"
    script.write_text(
        '#!/bin/sh\necho "fakesnow starting"\necho "fatal: simulated start failure" >&2\nexit 3\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("FLOE_FAKESNOW", str(script))
    temp = tmp_path / "tmp"  # the launcher's (and so the server fixture's) temporary files
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    directory = tmp_path / "run"
    failed = threading.Event()
    errors: list[BaseException] = []

    def use() -> None:
        try:
            with shared_server(directory):
                pass
        except BaseException as exc:
            errors.append(exc)
        failed.set()

    thread = threading.Thread(target=use, daemon=True)
    started = time.monotonic()
    thread.start()
    # the launcher used to wait for the lock its user held, and the failure came after 180 s
    assert failed.wait(timeout=START_TIMEOUT_S / 6), "the failed start was not reported"
    assert time.monotonic() - started < START_TIMEOUT_S / 6
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    message = str(errors[0])
    assert "fatal: simulated start failure" in message
    assert "fakesnow starting" in message
    assert not directory.exists()  # the run's files go with the failed start
    assert list(temp.iterdir()) == []  # and the server's log and temp dir
