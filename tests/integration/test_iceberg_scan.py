"""``iceberg_scan`` through the plugin reads what pyiceberg wrote: every snapshot, every thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from floe_compute import ComputePlugin, QueryError, create_plugin

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]


@pytest.fixture
def plugin(extension_dir: Path) -> Iterator[ComputePlugin]:
    with create_plugin(extensions=["iceberg"], extension_directory=extension_dir, pool={"size": 4}) as p:
        yield p


def test_scan_matches_what_pyiceberg_wrote(plugin: ComputePlugin, iceberg_table: IcebergTableFixture) -> None:
    scan = f"iceberg_scan('{iceberg_table.metadata_location}')"
    with plugin.execute(f"SELECT count(*), sum(id), count(DISTINCT category) FROM {scan}") as result:
        assert result.fetchall() == [(iceberg_table.rows, iceberg_table.checksum, 7)]
    with plugin.execute(f"SELECT id, category, amount, ts FROM {scan}") as result:
        table = result.to_arrow()
    assert table.num_rows == iceberg_table.rows
    assert table.column_names == ["id", "category", "amount", "ts"]
    assert sum(table.column("id").to_pylist()) == iceberg_table.checksum


def test_scan_of_an_earlier_snapshot_returns_its_rows(
    plugin: ComputePlugin, iceberg_table: IcebergTableFixture
) -> None:
    by_id = (
        f"SELECT count(*), sum(id), max(id) FROM iceberg_scan('{iceberg_table.metadata_location}', "
        f"snapshot_from_id = {iceberg_table.first_snapshot_id})"
    )
    expected = [(iceberg_table.first_rows, iceberg_table.first_checksum, iceberg_table.first_rows - 1)]
    assert plugin.execute(by_id).fetchall() == expected
    # the older metadata file is that snapshot too
    first = iceberg_table.first_metadata_location
    by_file = f"SELECT count(*), sum(id), max(id) FROM iceberg_scan('{first}')"
    assert plugin.execute(by_file).fetchall() == expected
    snapshots = plugin.execute(
        f"SELECT snapshot_id FROM iceberg_snapshots('{iceberg_table.metadata_location}') "
        "ORDER BY sequence_number"
    ).fetchall()
    assert snapshots == [(iceberg_table.first_snapshot_id,), (iceberg_table.snapshot_id,)]


def test_scan_streams_in_arrow_batches_from_many_threads(
    plugin: ComputePlugin, iceberg_table: IcebergTableFixture
) -> None:
    totals: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            sql = f"SELECT id FROM iceberg_scan('{iceberg_table.metadata_location}')"
            with plugin.execute(sql) as result:
                totals.append(sum(sum(b.column(0).to_pylist()) for b in result.arrow_batches(1000)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert totals == [iceberg_table.checksum] * 6


def test_missing_metadata_file_is_a_query_error_naming_the_path(
    plugin: ComputePlugin, tmp_path: Path
) -> None:
    missing = tmp_path / "gone" / "metadata" / "00001-x.metadata.json"
    with pytest.raises(QueryError) as caught:
        plugin.execute(f"SELECT count(*) FROM iceberg_scan('{missing}')")
    assert f'Cannot open file "{missing}"' in str(caught.value)
    assert caught.value.query_id is not None
    # the pool is fine afterwards
    assert plugin.execute("SELECT 1").fetchall() == [(1,)]


def test_table_directory_instead_of_metadata_file_says_what_to_pass(
    plugin: ComputePlugin, iceberg_table: IcebergTableFixture
) -> None:
    directory = Path(iceberg_table.metadata_location).parent.parent
    with pytest.raises(QueryError, match=r"needs the table's metadata file .*metadata\.json"):
        plugin.execute(f"SELECT count(*) FROM iceberg_scan('{directory}')")
