"""What execute() accepts as parameters: the messages of the check that runs before anything else."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from floe_compute import ConfigError
from floe_compute.params import check_params

SECRET = "Zq-card-4111111111111111-9x"


@pytest.mark.parametrize(
    ("params", "got"),
    [
        ([SECRET], "got a list (positional placeholders such as ?, %s or $1 are not bound"),
        ((SECRET,), "got a tuple (positional placeholders"),
        (SECRET, "got a str"),
        (SECRET.encode(), "got a bytes"),
        (4111111111111111, "got an int"),
        ({SECRET}, "got a set"),
        ([], "got a list"),
    ],
)
def test_anything_but_a_mapping_is_refused_with_what_is_accepted(params: Any, got: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_params("SELECT :x", params)
    message = str(caught.value)
    assert message.startswith("params: expected a mapping of :name placeholders to values, as in ")
    assert got in message
    assert SECRET not in message and "4111111111111111" not in message


@pytest.mark.parametrize("rows", [[{"x": 1}, {"x": SECRET}], ({"x": 1},)])
def test_executemany_is_refused_with_what_to_do_instead(rows: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"^params: a (list|tuple) of mappings \(executemany\) is not supported: "
    ):
        check_params("INSERT INTO t VALUES (:x)", rows)


def test_parameter_names_must_be_str() -> None:
    with pytest.raises(ConfigError, match=r"parameter names must be str.*got a key of type int"):
        check_params("SELECT :x", {"x": 1, 4111: SECRET})


def test_a_pyformat_placeholder_says_which_name_to_write() -> None:
    with pytest.raises(ConfigError, match=r"has a %\(customer\)s placeholder.*write :customer$"):
        check_params("SELECT * FROM t WHERE c = %(customer)s", {"customer": 1}, "postgresql")


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT :x", None),
        ("SELECT 1", {}),
        ("SELECT :x", {"x": [1, 2]}),
        ("SELECT :x", MappingProxyType({"x": 1})),
        ("SELECT :x", OrderedDict(x=1)),
        ("SELECT '%(x)s' -- %(y)s\n, :x", {"x": 1}),  # in a literal or a comment: not a placeholder
        ("SELECT %(x)s", None),  # no parameters: the SQL runs as written
    ],
)
def test_mappings_with_str_keys_pass(sql: str, params: Any) -> None:
    check_params(sql, params, "duckdb")
