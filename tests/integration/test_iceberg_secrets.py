"""An Iceberg endpoint's userinfo and an unusual client secret never reach a log line, an error or
any exception chained to it (``__cause__`` or ``__context__``)."""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path
from typing import Any

import pytest

from floe_compute import ConnectionFailedError, create_plugin

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    return seen


def _stopped_endpoint(userinfo: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://{userinfo}@127.0.0.1:{sock.getsockname()[1]}"


def test_endpoint_userinfo_is_scrubbed(
    extension_dir: Path, lake: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "endpoint-pw-7f3a9c"
    endpoint = lake["endpoint"].replace("http://", f"http://reader:{password}@")
    plugin = create_plugin(extension_directory=extension_dir, attach=[{**lake, "endpoint": endpoint}])
    with plugin:
        assert plugin.execute("SELECT 1").fetchall() == [(1,)]
    assert "attached Iceberg catalog 'lake'" in caplog.text
    for text in (caplog.text, repr(plugin), repr(plugin.config), plugin.config.model_dump_json()):
        assert password not in text


def test_secret_with_a_nul_is_never_in_an_error_or_its_chain(
    extension_dir: Path, lake: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    head, tail = "client-part-one", "client-part-two"
    userinfo_pw = "userinfo-pw-51d2"
    endpoint = _stopped_endpoint(f"u:{userinfo_pw}")
    catalog = {**lake, "endpoint": endpoint, "client_secret": f"{head}\x00{tail}"}
    plugin = create_plugin(extension_directory=extension_dir, attach=[catalog])
    with pytest.raises(ConnectionFailedError) as caught:
        plugin.connect()
    chain = _chain(caught.value)
    texts = [caplog.text, "".join(traceback.format_exception(caught.value))]
    texts += [f"{e} {e.args!r}" for e in chain]
    for text in texts:
        for piece in (head, tail, userinfo_pw):
            assert piece not in text
