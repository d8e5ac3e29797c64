"""The SQL literals the Spark Thrift and Databricks load path renders (its statements run against a
real Thrift server in the contract suite; here, the values the sample there does not cover)."""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
import pytest

from floe_compute import ConfigError
from floe_compute.engines._spark_load import spark_type, values_sql


def test_each_arrow_type_renders_as_a_spark_literal() -> None:
    batch = pa.record_batch(
        {
            "text": pa.array(["it's \\ 100%", None]),
            "ratio": pa.array([float("nan"), -float("inf")]),
            "amount": pa.array([decimal.Decimal("-0.01"), None], pa.decimal128(5, 2)),
            "raw": pa.array([b"\x00'", None]),
            "at": pa.array([datetime.datetime(2024, 1, 2, 4, 4, 5, 6)] * 2, pa.timestamp("us", "CET")),
            "wall": pa.array([datetime.datetime(2024, 1, 2), None], pa.timestamp("ns")),
            "day": pa.array([datetime.date(2024, 2, 29), None]),
            "flag": pa.array([True, None]),
        }
    )
    assert values_sql(batch) == (
        "('it\\'s \\\\ 100%', CAST('NaN' AS DOUBLE), -0.01BD, X'0027', "
        "TIMESTAMP'2024-01-02 04:04:05.000006Z', TIMESTAMP_NTZ'2024-01-02 00:00:00.000000', "
        "DATE'2024-02-29', TRUE), "
        "(NULL, CAST('-Infinity' AS DOUBLE), NULL, NULL, TIMESTAMP'2024-01-02 04:04:05.000006Z', "
        "NULL, NULL, NULL)"
    )


def test_a_slice_of_lists_renders_its_own_rows() -> None:
    lists = pa.array([[1], [2, 3], None, []], pa.list_(pa.int32()))
    assert values_sql(pa.record_batch({"tags": lists}).slice(1)) == (
        "(CAST(array(2, 3) AS ARRAY<INT>)), (NULL), (CAST(array() AS ARRAY<INT>))"
    )


def test_types_create_gives_and_those_it_refuses() -> None:
    assert spark_type(pa.field("l", pa.list_(pa.decimal128(12, 2)))) == "ARRAY<DECIMAL(12, 2)>"
    assert spark_type(pa.field("u", pa.uint64())) == "DECIMAL(20, 0)"
    with pytest.raises(ConfigError, match="'t'"):
        spark_type(pa.field("t", pa.time64("us")))
