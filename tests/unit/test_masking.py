"""The text forms of bound values that the library masks in error messages."""

from __future__ import annotations

import datetime
import enum
import uuid
from decimal import Decimal
from typing import Any

import pytest

from floe_compute.masking import bound_texts, mask_values


class Plan(enum.Enum):
    GOLD = "gold-plan-7731"


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ({"a": [1, ("x", {"k": "card-4111111111111111"})]}, "string 'card-4111111111111111'"),
        ({"k": "card-4111"}, "{'k': 'card-4111'}"),
        (Decimal("4111111111111111.5"), 'Casting value "4111111111111111.5"'),
        (Decimal("4111111111111111.5"), "decimal value 4111111111111112 to type INT8"),
        (Decimal("41111111.50"), "value 41111111.5 is out of range"),
        (Decimal("4.1111111115E+9"), "value 4111111111.5 is out of range"),
        (4111111111111111.0, "value 4111111111111111 out of range"),
        (datetime.datetime(2031, 5, 17, 13, 14, 15), "timestamp '2031-05-17T13:14:15'"),
        (datetime.datetime(2031, 5, 17, 13, 14, 15), "date '2031-05-17'"),
        (datetime.date(2031, 5, 17), "string '2031-05-17'"),
        (datetime.time(13, 14, 15, 250), "time 13:14:15"),
        (uuid.UUID("9f1c2b3a-5d6e-4f70-8a9b-0c1d2e3f4a5b"), "'9F1C2B3A5D6E4F708A9B0C1D2E3F4A5B'"),
        (b"\x00\x01secret-blob", "blob '\\x00\\x01secret-blob' hex 0001"),
        (b"card-4111", "\\x636172642d34313131"),
        ("it's-4111", "string 'it''s-4111'"),
        (["ab\x00cdef-secret"], "string 'ab'cdef-secret"),
        (Plan.GOLD, "'gold-plan-7731'"),
        ({"nested": {"deeper": [[[["Zq-deep-9x"]]]]}}, "[[[['Zq-deep-9x']]]]"),
    ],
)
def test_a_bound_value_is_masked_in_the_form_a_driver_prints_it(value: Any, printed: str) -> None:
    masked = mask_values(printed, bound_texts({"v": value}))
    assert "***" in masked
    for piece in ("4111", "2031-05-17", "13:14:15", "9F1C2B3A", "secret", "gold", "deep", "6361"):
        assert piece not in masked or piece not in printed, masked


def test_short_values_are_masked_only_where_quoted() -> None:
    texts = bound_texts({"a": 7, "b": "ab", "c": [True, None]})
    assert mask_values("LINE 7: value '7' and \"ab\" in table ab7", texts) == (
        "LINE 7: value '***' and \"***\" in table ab7"
    )


def test_odd_values_never_fail_and_stay_bounded() -> None:
    looped: list[Any] = ["Zq-looped-9x"]
    looped.append(looped)
    texts = bound_texts(
        {
            "loop": looped,
            "huge_int": 10**5000,  # more digits than str() converts
            "huge_decimal": Decimal("1E+999999999"),
            "nan": float("nan"),
            "object": object(),
        }
    )
    assert "Zq-looped-9x" in texts
    assert max(len(t) for t in texts) < 100
    assert not any(" at 0x" in t for t in texts)
