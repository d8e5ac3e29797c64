"""The contract suite: rows, Arrow batches, parameters, SQLAlchemy executables and errors."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from floe_compute import (
    ComputePlugin,
    ConfigError,
    QueryError,
)
from floe_compute.testing.contract_base import ContractBase

__all__ = ["ResultsContract"]


class ResultsContract(ContractBase):
    """Rows, Arrow batches, parameters, SQLAlchemy executables and errors."""

    # -- execute and fetch ------------------------------------------------------------------

    def test_rows_are_tuples_in_order(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(5)) as result:
            assert result.columns == ["i", "label"]
            rows = list(result)
        assert rows == [(i, f"row {i}") for i in range(5)]
        assert all(type(row) is tuple for row in rows)

    def test_fetchone_fetchmany_fetchall_and_rowcount(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(10), batch_size=3) as result:
            assert result.fetchone() == (0, "row 0")
            assert [r[0] for r in result.fetchmany(4)] == [1, 2, 3, 4]
            assert result.rowcount >= 5
            assert [r[0] for r in result.fetchall()] == [5, 6, 7, 8, 9]
            assert result.fetchone() is None
            assert result.fetchmany(2) == []
            assert result.rowcount == 10

    def test_arrow_batches_is_a_record_batch_reader(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(25_000)) as result:
            reader = result.arrow_batches(10_000)
            assert isinstance(reader, pa.RecordBatchReader)
            assert reader.schema.names == ["i", "label"]
            sizes = [batch.num_rows for batch in reader]
        assert sum(sizes) == 25_000
        assert max(sizes) <= 10_000

    def test_to_arrow_has_every_row(self, plugin: ComputePlugin) -> None:
        with plugin.execute(self.series_query(1000)) as result:
            table = result.to_arrow()
        assert table.num_rows == 1000
        assert table.column("i").to_pylist() == list(range(1000))

    def test_statement_without_rows(self, plugin: ComputePlugin) -> None:
        plugin.execute("CREATE TABLE contract_ddl (id INTEGER)").close()
        plugin.execute("INSERT INTO contract_ddl VALUES (1), (2)").close()
        with plugin.execute("SELECT count(*) FROM contract_ddl") as result:
            assert result.fetchall() == [(2,)]

    # -- parameters and SQLAlchemy ----------------------------------------------------------

    def test_named_parameters_bind(self, plugin: ComputePlugin) -> None:
        sql = f"SELECT i FROM ({self.series_query(100)}) AS s WHERE i >= :low AND i < :high"
        with plugin.execute(sql, {"low": 10, "high": 13}) as result:
            assert result.fetchall() == [(10,), (11,), (12,)]

    def test_sqlalchemy_executables_are_accepted(self, plugin: ComputePlugin) -> None:
        with plugin.execute(sa.text("SELECT :x + 1 AS y"), {"x": 41}) as result:
            assert result.fetchall() == [(42,)]
        with plugin.execute(sa.select(sa.literal(7).label("seven"))) as result:
            assert result.columns == ["seven"]
            assert result.fetchall() == [(7,)]

    def test_wrong_parameter_names_are_named(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError, match=r"missing :low.*unexpected :lo\b"):
            plugin.execute("SELECT :low AS x", {"lo": 1})
        assert plugin.pool_stats().in_use == 0

    def test_engine_works_with_sqlalchemy_inspect(self, plugin: ComputePlugin) -> None:
        plugin.execute("CREATE TABLE contract_inspect (id INTEGER PRIMARY KEY, name VARCHAR(20))").close()
        inspector = sa.inspect(plugin.engine)
        assert "contract_inspect" in inspector.get_table_names()
        columns = [c["name"] for c in inspector.get_columns("contract_inspect")]
        assert columns == ["id", "name"]
        assert inspector.get_pk_constraint("contract_inspect")["constrained_columns"] == ["id"]

    def test_strings_run_as_written(self, plugin: ComputePlugin) -> None:
        """Colons and percent signs in literals are not parameters; without ``params`` nothing binds."""
        with plugin.execute("SELECT 'meet at 10 :30' AS a, ':x' AS b, '100%' AS c") as result:
            assert result.fetchall() == [("meet at 10 :30", ":x", "100%")]
        with plugin.execute("SELECT ':x' AS a, :y AS b, '50%' AS c -- :z", {"y": 1}) as result:
            assert result.fetchall() == [(":x", 1, "50%")]

    def test_several_statements_in_one_string(self, plugin: ComputePlugin) -> None:
        script = "CREATE TABLE contract_script (id INTEGER); SELECT 2 AS two"
        if not plugin.runs_scripts:
            with pytest.raises(QueryError, match="2 statements; run them one at a time"):
                plugin.execute(script)
            assert plugin.pool_stats().in_use == 0
            return
        with plugin.execute(script) as result:  # every statement runs; the last one's rows
            assert result.fetchall() == [(2,)]
        with plugin.execute("SELECT count(*) FROM contract_script") as result:
            assert result.fetchall() == [(0,)]

    # -- errors -----------------------------------------------------------------------------

    def test_missing_table_names_query_and_table(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError) as caught:
            plugin.execute("SELECT * FROM contract_no_such_table")
        error = caught.value
        assert error.query_id is not None
        assert error.query_id in str(error)
        assert "contract_no_such_table" in str(error)
        assert error.statement is not None and error.statement.startswith("SELECT")
        assert plugin.name in str(error)
        assert error.__cause__ is not None
        assert not isinstance(error.__cause__, sa.exc.SQLAlchemyError)
        assert plugin.pool_stats().in_use == 0

    def test_syntax_error_is_a_query_error(self, plugin: ComputePlugin) -> None:
        with pytest.raises(QueryError, match=r"(?i)syntax"):
            plugin.execute("SELEC 1")
        assert plugin.pool_stats().in_use == 0

    def test_invalid_arguments_are_config_errors(self, plugin: ComputePlugin) -> None:
        with pytest.raises(ConfigError, match="timeout"):
            plugin.execute("SELECT 1", timeout=-1)
        with pytest.raises(ConfigError, match="batch_size"):
            plugin.execute("SELECT 1", batch_size=0)
