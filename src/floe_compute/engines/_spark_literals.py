"""SQL literals for the parameters of a Spark Thrift statement (HiveServer2 has no bind parameters:
PyHive formats them into the statement's text).

Private to :mod:`floe_compute.engines.spark`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pyhive import exc as hive_exc
from pyhive import hive


class _Escaper(hive.HiveParamEscaper):  # type: ignore[misc]
    """PyHive's literals, and Spark SQL's for bytes (``X'0aff'``) and decimals (``1.10BD``, exact;
    PyHive decodes bytes as UTF-8 and has no literal for a ``Decimal``)."""

    def escape_args(self, parameters: Any) -> Any:
        if isinstance(parameters, dict):
            return {name: self.escape_named(name, value) for name, value in parameters.items()}
        return tuple(self.escape_named(str(i), value) for i, value in enumerate(parameters))

    def escape_named(self, name: str, value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return f"X'{bytes(value).hex()}'"
        if isinstance(value, Decimal):
            if not value.is_finite():
                message = f"parameter {name!r}: Spark SQL has no NaN or infinite decimals"
                raise hive_exc.ProgrammingError(message)
            return f"{value:f}BD"
        return self.escape_item(value)


_ESCAPER = _Escaper()
escape_args = _ESCAPER.escape_args
