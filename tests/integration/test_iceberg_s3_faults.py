"""What goes wrong with a lake on S3 is a specific error naming the bucket or the catalog, never a
key; and the same plugin (its pool, its health check) works again once the server is back."""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fixtures.iceberg import build_iceberg_table

from floe_compute import ConnectionFailedError, QueryError, create_plugin

if TYPE_CHECKING:
    from fixtures.iceberg import IcebergTableFixture

pytest_plugins = ["iceberg_fixtures"]
pytestmark = [pytest.mark.iceberg, pytest.mark.xdist_group("iceberg")]

COUNT = "SELECT count(*), sum(id) FROM {}"


def _texts(error: BaseException, caplog: pytest.LogCaptureFixture, plugin: Any) -> list[str]:
    return [caplog.text, "".join(traceback.format_exception(error)), repr(plugin), repr(plugin.config)]


def test_wrong_secret_key_and_missing_bucket_name_the_bucket_never_the_key(
    extension_dir: Path,
    s3_table: IcebergTableFixture,
    s3_settings: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = {**s3_settings, "secret_key": "wrong-" + s3_settings["secret_key"]}
    scan = f"iceberg_scan('{s3_table.metadata_location}')"
    with create_plugin(extension_directory=extension_dir, extensions=["iceberg"], s3=wrong) as plugin:
        with pytest.raises(ConnectionFailedError) as refused:
            plugin.execute(COUNT.format(scan))
        assert "S3 refused the credentials for bucket 'lake' (HTTP 403)" in str(refused.value)
        for text in _texts(refused.value, caplog, plugin):
            assert wrong["secret_key"] not in text
    with create_plugin(extension_directory=extension_dir, extensions=["iceberg"], s3=s3_settings) as plugin:
        missing = scan.replace("s3://lake/", "s3://no-such-bucket/")
        with pytest.raises(QueryError, match="no bucket 'no-such-bucket', or no such object in it"):
            plugin.execute(COUNT.format(missing))
        assert plugin.execute(COUNT.format(scan)).fetchall() == [(s3_table.rows, s3_table.checksum)]


def test_stopped_s3_server_names_the_bucket_and_the_pool_recovers(
    extension_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fixtures.s3 import MotoS3Server

    caplog.set_level(logging.DEBUG)
    server = MotoS3Server().start()
    try:
        keys = server.prepare(("outage",), authenticate=False)
        table = build_iceberg_table(
            tmp_path, 300, 200, warehouse="s3://outage/w", properties=server.pyiceberg_properties(keys)
        )
        s3 = server.client(keys)
        saved = {
            o["Key"]: s3.get_object(Bucket="outage", Key=o["Key"])["Body"].read()
            for o in s3.list_objects_v2(Bucket="outage")["Contents"]
        }
        settings = {"endpoint": server.endpoint, "region": "us-east-1", "url_style": "path"}
        settings |= {"key_id": keys.key_id, "secret_key": keys.secret_key}
        scan = COUNT.format(f"iceberg_scan('{table.metadata_location}')")
        caplog.clear()  # boto3's own DEBUG lines of the setup above show the key it was given
        plugin = create_plugin(
            extension_directory=extension_dir, extensions=["iceberg"], s3=settings, pool={"size": 2}
        )
        with plugin:
            assert plugin.execute(scan).fetchall() == [(table.rows, table.checksum)]
            server.stop()
            with pytest.raises(ConnectionFailedError) as down:
                plugin.execute(scan)
            assert f"the S3 endpoint of bucket 'outage' ({server.host_port}) is unreachable" in str(
                down.value
            )
            assert plugin.health_check().healthy  # the database itself is fine
            server.start()  # the same address; moto's state is new: put the bucket back
            server.prepare(("outage",), authenticate=False)
            for key, body in saved.items():
                s3.put_object(Bucket="outage", Key=key, Body=body)
            assert plugin.execute(scan).fetchall() == [(table.rows, table.checksum)]
            assert plugin.health_check().healthy
        for text in _texts(down.value, caplog, plugin):
            assert keys.secret_key not in text
    finally:
        server.stop()


def test_stopped_catalog_names_it_and_the_pool_recovers(
    extension_dir: Path, s3_table: IcebergTableFixture, s3_settings: dict[str, Any]
) -> None:
    # a process, so stopping it closes every connection DuckDB keeps alive to it
    script = Path(__file__).resolve().parents[2] / "fixtures" / "iceberg_rest.py"
    args = ["--uri", s3_table.catalog_uri, "--warehouse", s3_table.warehouse]
    args += [f"--property={k}={v}" for k, v in s3_table.properties.items()]

    def serve(port: int = 0) -> subprocess.Popen[str]:
        command = [sys.executable, str(script), *args, "--port", str(port)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    server = serve()
    try:
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()
        catalog = {"name": "lake", "endpoint": endpoint, "warehouse": "w"}
        query = COUNT.format("lake.ns.events")
        with create_plugin(extension_directory=extension_dir, s3=s3_settings, attach=[catalog]) as plugin:
            assert plugin.execute(query).fetchall() == [(s3_table.rows, s3_table.checksum)]
            server.terminate()
            server.wait(timeout=10)
            with pytest.raises(ConnectionFailedError) as down:
                plugin.execute(query)
            assert f"the Iceberg catalog 'lake' at {endpoint} is unreachable" in str(down.value)
            assert plugin.health_check().healthy
            server = serve(int(endpoint.rsplit(":", 1)[1]))
            assert server.stdout is not None
            assert server.stdout.readline().strip() == endpoint
            assert plugin.execute(query).fetchall() == [(s3_table.rows, s3_table.checksum)]
    finally:
        server.kill()
        server.wait(timeout=10)
