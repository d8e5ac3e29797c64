"""BigQuery's configuration: the URL, credentials, job fields and its one limit, and the job labels."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ByteSize, SecretStr, field_validator, model_validator
from sqlalchemy.engine import URL

from floe_compute.config import ComputeConfig, ResourceLimits, parse_url
from floe_compute.errors import ConfigError
from floe_compute.units import check_size

__all__ = ["BigQueryConfig", "BigQueryLimits", "job_labels", "key_info"]

_URL_KEYS = {"location", "credentials_path", "priority", "api_endpoint", "storage_endpoint"}
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


class BigQueryLimits(ResourceLimits):
    """The limits BigQuery applies: ``maximum_bytes_billed`` per query job (``10GB``, ``1TiB``...)."""

    maximum_bytes_billed: ByteSize | None = None
    """The most a query job may bill; BigQuery refuses a job that would bill more, before it runs."""

    _bytes = field_validator("maximum_bytes_billed", mode="before")(check_size)


class BigQueryConfig(ComputeConfig):
    """``bigquery://PROJECT[/DATASET][?location=EU]``, or the same fields as keywords."""

    url: Any = None
    """``bigquery://PROJECT[/DATASET]``; built from ``project`` and ``dataset`` when not given."""
    project: str
    """The project that runs (and pays for) the query jobs."""
    dataset: str | None = None
    """The default dataset: unqualified table names resolve there; dbt builds its models there."""
    location: str | None = None
    """Where the jobs run (``EU``, ``us-central1``); default: BigQuery's choice."""
    credentials_file: Path | None = None
    """A service account key file. Without it and ``credentials_json``: application default
    credentials, or anonymous ones when ``api_endpoint`` is set (an emulator)."""
    credentials_json: SecretStr | None = None
    """A service account key's JSON itself."""
    api_endpoint: str | None = None
    """Another REST endpoint: an emulator or a private endpoint."""
    storage_endpoint: str | None = None
    """The Storage Write API's gRPC endpoint ``host:port`` that ``load_arrow`` streams to
    (``http://host:port``: plain text, an emulator). Default: BigQuery's own, unless
    ``api_endpoint`` is set: then loads go as Parquet load jobs through ``api_endpoint``."""
    priority: Literal["interactive", "batch"] = "interactive"
    """The jobs' priority: ``batch`` jobs queue until resources are free."""
    use_storage_api: bool = False
    """Read results through the Storage Read API (needs ``google-cloud-bigquery-storage``)."""
    limits: BigQueryLimits = BigQueryLimits()
    unsupported_limits = dict.fromkeys(
        ("memory_limit", "threads", "temp_directory", "max_temp_directory_size"), "use maximum_bytes_billed"
    )
    dbt_private_key_env: str = "FLOE_BIGQUERY_PRIVATE_KEY"
    """The variable the dbt profile reads the ``credentials_json`` key from (never written to it)."""

    @model_validator(mode="before")
    @classmethod
    def _fields_from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("url") is None:
            if not data.get("project"):
                raise ValueError("project: missing; give a URL bigquery://PROJECT/DATASET or project=...")
            data["url"] = URL.create("bigquery", host=data["project"], database=data.get("dataset"))
            return data
        url = parse_url(data["url"])
        if url.get_backend_name() != "bigquery":
            raise ValueError(f"url: expected bigquery://PROJECT/DATASET, got {url.drivername}://")
        query = dict(url.query)
        unknown = sorted(set(query) - _URL_KEYS)
        if unknown:
            raise ValueError(
                f"url: unknown parameter {', '.join(unknown)}; accepted: {', '.join(sorted(_URL_KEYS))}"
            )
        if "credentials_path" in query:
            data.setdefault("credentials_file", query.pop("credentials_path"))
        for key, value in query.items():
            data.setdefault(key, value)
        if url.host:
            data.setdefault("project", url.host)
        if url.database:
            data.setdefault("dataset", url.database)
        data["url"] = URL.create("bigquery", host=data.get("project"), database=data.get("dataset"))
        return data

    @model_validator(mode="after")
    def _check(self) -> BigQueryConfig:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.:-]{0,62}", self.project):
            raise ValueError(f"project: {self.project!r} is not a Google Cloud project id ('my-project')")
        if self.dataset is not None and not re.fullmatch(r"\w{1,1024}", self.dataset, re.ASCII):
            raise ValueError(f"dataset: {self.dataset!r} is not a dataset id (letters, digits, _)")
        if self.credentials_file is not None and self.credentials_json is not None:
            raise ValueError("credentials_file, credentials_json: give one of them, not both")
        if self.password is not None:
            raise ValueError("password: BigQuery takes credentials_file or credentials_json instead")
        if self.settings:
            raise ValueError("settings: BigQuery has no session settings; use the job fields instead")
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        if self.credentials_json is None:
            return super().secrets
        raw = self.credentials_json.get_secret_value()
        key = key_info(raw).get("private_key", "")
        return (*super().secrets, raw, *(s for s in (key, key.replace("\n", "\\n")) if s))

    @property
    def maximum_bytes_billed(self) -> int | None:
        limit = self.limits.maximum_bytes_billed
        return None if limit is None else int(limit)


def key_info(raw: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        info = json.loads(raw)
        return info if isinstance(info, dict) else {}
    return {}


def job_labels(tags: dict[str, str] | Any, query_id: str) -> dict[str, str]:
    """The job labels of a query: its tags made valid for BigQuery, and the query id.

    Label keys and values are lowercase, at most 63 characters of ``[a-z0-9_-]``; keys start with a
    letter. A tag that cannot be made valid is a :class:`ConfigError` naming it.
    """
    labels: dict[str, str] = {}
    for name, value in [*dict(tags).items(), ("floe_query_id", query_id)]:
        key = _LABEL_BAD.sub("_", str(name).lower()).strip("_")[:63]
        if not key or not key[0].isalpha():
            raise ConfigError(
                f"tags: {name!r} cannot be a BigQuery label key (lowercase letters, digits, _ and -, "
                "starting with a letter, at most 63 characters)"
            )
        if key in labels:
            raise ConfigError(f"tags: {name!r} and another tag both become the BigQuery label {key!r}")
        labels[key] = _LABEL_BAD.sub("_", str(value).lower())[:63]
    return labels
