"""Durations, sizes and counts are checked when the config is built, naming the field; the
watchdog keeps watching whatever a callback does."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from floe_compute import ConfigError, create_plugin
from floe_compute.cli import main
from floe_compute.config import MAX_SECONDS, check_timeout
from floe_compute.timeouts import QueryHandle, Watchdog

ABSURD_SECONDS = [math.inf, -math.inf, math.nan, "inf", "nan", 1e300, 10**400, MAX_SECONDS * 2, True, 0, -1]


@pytest.mark.parametrize(
    "field", ["timeouts.query", "timeouts.connect", "pool.timeout", "pool.recycle", "health.monitor_interval"]
)
@pytest.mark.parametrize("value", ABSURD_SECONDS, ids=repr)
def test_durations_must_be_finite_and_sane(field: str, value: Any) -> None:
    section, key = field.split(".")
    with pytest.raises(ConfigError) as caught:
        create_plugin("duckdb:///:memory:", **{section: {key: value}})
    assert field in str(caught.value)


@pytest.mark.parametrize("value", ABSURD_SECONDS, ids=repr)
def test_timeout_argument_helper_names_the_argument(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^timeout: "):
        check_timeout(value)


def test_timeout_argument_helper_keeps_good_values() -> None:
    assert check_timeout(None) is None
    assert check_timeout(2) == 2.0
    assert check_timeout("0.5") == 0.5


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "0", "soon"])
def test_cli_timeout_is_checked_like_the_library(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["query", "duckdb:///:memory:", "SELECT 1", "--timeout", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--timeout" in err
    assert "Traceback" not in err


# -- sizes and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [True, False, "9" * 400 + "GB", 1e300, math.inf, "2 parsecs", "-1GB", 0, 2**70, [1]], ids=repr
)
@pytest.mark.parametrize("field", ["memory_limit", "max_temp_directory_size"])
def test_sizes_refuse_booleans_and_absurd_values(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin("duckdb:///:memory:", limits={field: value})
    assert f"limits.{field}" in str(caught.value)
    assert len(str(caught.value)) < 400  # a huge input is not echoed in full


@pytest.mark.parametrize(
    ("value", "size"), [("2GB", 2 * 1000**3), ("512MiB", 512 * 1024**2), ("1.5 kb", 1500), (4096, 4096)]
)
def test_sizes_follow_bytesize(value: Any, size: int) -> None:
    plugin = create_plugin("duckdb:///:memory:", limits={"memory_limit": value})
    assert plugin.config.limits.memory_limit == size


def test_threads_are_capped_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match=r"limits\.threads: at most 1024 threads"):
        create_plugin("duckdb:///:memory:", limits={"threads": 100_000})
    with pytest.raises(ConfigError, match=r"limits\.threads"):
        create_plugin("duckdb:///:memory:", limits={"threads": True})
    assert create_plugin("duckdb:///:memory:", limits={"threads": 4}).config.limits.threads == 4


@pytest.mark.parametrize(("spelling", "expected"), [("yes", True), ("true", True), ("1", True), ("on", True)])
def test_read_only_spellings(tmp_path: Any, spelling: str, expected: bool) -> None:
    path = tmp_path / "ro.duckdb"
    plugin = create_plugin(f"duckdb:///{path}?read_only={spelling}")
    assert plugin.config.read_only is expected
    for no in ("no", "false", "0", "off"):
        assert create_plugin(f"duckdb:///{path}?read_only={no}").config.read_only is False


def test_read_only_rejects_other_words(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"read_only"):
        create_plugin(f"duckdb:///{tmp_path / 'x.duckdb'}?read_only=maybe")


# -- the watchdog -------------------------------------------------------------------------------


class _Exploding(QueryHandle):
    __slots__ = ()

    def expire(self) -> bool:
        raise RuntimeError("a callback failed")


def test_watchdog_survives_a_failing_callback_and_a_far_deadline() -> None:
    dog = Watchdog()
    dog.watch(QueryHandle("far", 1e12, None))  # would overflow a single wait
    dog.watch(_Exploding("boom", 0.01, None))
    fired = threading.Event()
    for i in range(3):
        handle = QueryHandle(f"q{i}", 0.05, fired.set if i == 2 else None)
        dog.watch(handle)
    assert fired.wait(30), "the watchdog thread died: a later deadline was never enforced"
