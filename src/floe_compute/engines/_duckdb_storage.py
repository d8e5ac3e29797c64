"""Object storage for the DuckDB engine: S3 credentials as DuckDB secrets, and S3/catalog errors.

A lake's storage keys and its catalog's credentials are the secrets a platform guards most: they
reach DuckDB only through ``CREATE SECRET`` (never a logged statement), dbt only through
``env_var()``, and DuckDB shows them redacted in ``duckdb_secrets()``.

Private to :mod:`floe_compute.engines.duckdb`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from floe_compute.config import ConfigModel

__all__ = ["S3Storage", "describe_storage_error", "written_tables"]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class S3Storage(ConfigModel):
    """Where a lake's files live on S3 (or an S3 API), and the keys to read and write them.

    ``provider: config`` takes the keys given here; ``credential_chain`` finds them the way the
    AWS SDK does (environment variables, ``~/.aws``, an instance or container role), with the
    ``duckdb-extension-aws`` package.
    """

    provider: Literal["config", "credential_chain"] = "config"
    """``config`` (the keys below) or ``credential_chain`` (the environment, the instance)."""
    chain: Annotated[str, Field(pattern=r"^[a-z_]+(;[a-z_]+)*$")] | None = None
    """For ``credential_chain``: which sources, in order (``env;config;instance``); default: all."""
    endpoint: str | None = None
    """The S3 API's address (``http://127.0.0.1:9000``, ``https://s3.example.com``); default: AWS."""
    region: str | None = None
    """The bucket's region."""
    url_style: Literal["path", "vhost"] | None = None
    """``path`` for most S3-compatible servers (MinIO, moto...); ``vhost`` is AWS's default."""
    key_id: str | None = None
    """The access key id (with ``secret_key``)."""
    secret_key: SecretStr | None = None
    """The secret access key."""
    session_token: SecretStr | None = None
    """A session token, for temporary credentials."""
    scope: Annotated[str, Field(pattern=r"^s3://")] | None = None
    """The paths these keys are for (``s3://bucket/prefix``); default: every ``s3://`` path."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith(("http://", "https://")):
            raise ValueError("expected host:port, or an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _keys(self) -> S3Storage:
        if self.provider == "credential_chain":
            if self.key_id or self.secret_key or self.session_token:
                raise ValueError(
                    "credential_chain finds the keys itself: give no key_id, secret_key or token"
                )
        elif (self.key_id is None) != (self.secret_key is None):
            raise ValueError("give key_id and secret_key together")
        elif self.chain is not None:
            raise ValueError("chain is for provider: credential_chain")
        return self

    def sensitive(self) -> dict[str, SecretStr]:
        """The values that never leave the process but through DuckDB's secret."""
        return {k: s for k, s in (("secret", self.secret_key), ("session_token", self.session_token)) if s}

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s.get_secret_value() for s in self.sensitive().values())

    @property
    def extensions(self) -> tuple[str, ...]:
        return ("httpfs", "aws") if self.provider == "credential_chain" else ("httpfs",)

    def secret_params(self, sensitive: dict[str, str]) -> dict[str, str | bool]:
        """``CREATE SECRET (TYPE s3, ...)``'s parameters, ``sensitive`` real or templated."""
        params: dict[str, str | bool | None] = {"provider": self.provider, "chain": self.chain}
        if self.endpoint is not None:
            split = urlsplit(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
            params |= {"endpoint": split.netloc + split.path, "use_ssl": split.scheme == "https"}
        params |= {"region": self.region, "url_style": self.url_style, "key_id": self.key_id}
        params |= {"scope": self.scope, **sensitive}
        return {k: v for k, v in params.items() if v is not None}

    def create_secret_sql(self, name: str) -> str:
        """The only statement that holds the keys. Never logged."""
        given = {k: s.get_secret_value() for k, s in self.sensitive().items()}
        shown = [
            f"{k.upper()} {str(v).lower() if isinstance(v, bool) else _sql(v)}"
            for k, v in self.secret_params(given).items()
        ]
        return f"CREATE OR REPLACE TEMPORARY SECRET {name} (TYPE s3, {', '.join(shown)})"

    def endpoint_url(self) -> str | None:
        if self.endpoint is None:
            return None
        return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"


# DuckDB's wording: "HTTP GET error reading '<url>' in region '<r>' (HTTP 403 Forbidden)", and
# "Could not connect to server error for HTTP HEAD to '<url>'"
_HTTP_STATUS = re.compile(r"error (?:reading|writing|on) '(?P<url>[^']+)'.*?\(HTTP (?P<status>\d{3})")
_UNREACHABLE = re.compile(
    r"Could not (?:connect to server|resolve hostname) error for HTTP \w+ to '(?P<url>[^']+)'"
)
_CATALOG_REQUEST = re.compile(r"(?:HTTP \w+ to|Request to) '(?P<url>https?://[^']+)'")
_COMMIT_CONFLICT = re.compile(r"Failed to commit Iceberg transaction: .*\(Conflict_409\)", re.S)


def _bucket(url: str, storages: list[S3Storage]) -> str | None:
    """The bucket of an ``s3://`` URL, or of an S3 API URL of a configured endpoint."""
    split = urlsplit(url)
    if split.scheme in ("s3", "s3a", "s3n"):
        return split.netloc
    for storage in storages:
        endpoint = storage.endpoint_url()
        if endpoint and urlsplit(endpoint).netloc == split.netloc:
            return split.path.lstrip("/").split("/", 1)[0] or None
        if endpoint and split.netloc.endswith("." + urlsplit(endpoint).netloc):
            return split.netloc.split(".", 1)[0]
    if split.netloc.endswith(".amazonaws.com"):
        return split.netloc.split(".", 1)[0] if ".s3." in split.netloc else split.path.split("/")[1]
    return None


def _catalog(url: str, catalogs: list[Any]) -> Any:
    """The attached catalog ``url`` belongs to (DuckDB's messages drop an endpoint's userinfo)."""
    for catalog in catalogs:
        split = urlsplit(catalog.endpoint)
        bare = split._replace(netloc=split.netloc.rpartition("@")[2]).geturl()
        if url.startswith(bare + "/") or url == bare:
            return catalog
    return None


def describe_storage_error(
    message: str, storages: list[S3Storage], catalogs: list[Any]
) -> tuple[str, str] | None:
    """``(kind, text)`` for an error of S3 or of an attached catalog, naming the bucket or the
    catalog; ``kind`` is ``unreachable``, ``refused``, ``conflict`` or ``query``."""
    if conflict := _COMMIT_CONFLICT.search(message):
        request = _CATALOG_REQUEST.search(conflict.group(0))
        catalog = _catalog(request["url"], catalogs) if request else None
        named = f"the Iceberg catalog {catalog.name!r}" if catalog else "the Iceberg catalog"
        return "conflict", (
            f"{named} refused the commit: a table it writes changed since this transaction read it "
            f"(another writer committed first); run the statement again"
        )
    if found := _UNREACHABLE.search(message):
        url = found["url"]
        if (catalog := _catalog(url, catalogs)) is not None:
            return (
                "unreachable",
                f"the Iceberg catalog {catalog.name!r} at {catalog.display_endpoint} is unreachable",
            )
        if (bucket := _bucket(url, storages)) is not None:
            return (
                "unreachable",
                f"the S3 endpoint of bucket {bucket!r} ({urlsplit(url).netloc}) is unreachable",
            )
        return "unreachable", f"an attached catalog or the storage is unreachable ({urlsplit(url).netloc})"
    if (found := _HTTP_STATUS.search(message)) and (bucket := _bucket(found["url"], storages)):
        status = found["status"]
        if status == "403":
            return "refused", (
                f"S3 refused the credentials for bucket {bucket!r} (HTTP 403): check the s3 key_id, "
                "secret_key and session_token (or the credentials the catalog vends)"
            )
        if status == "404":
            return "query", f"not found in S3: no bucket {bucket!r}, or no such object in it (HTTP 404)"
    return None


_WRITE_TARGET = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|CREATE\s+(?:OR\s+REPLACE\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|UPDATE|DELETE\s+FROM|MERGE\s+INTO)\s+(?P<table>[\w\"]+\.[\w\"]+\.[\w\"]+)",
    re.I,
)


def written_tables(statement: str, catalogs: Any) -> list[str]:
    """The tables of attached catalogs that ``statement`` writes (``lake.ns.t``), in order."""
    names = {c.name.lower() for c in catalogs}
    found = [m["table"].replace('"', "") for m in _WRITE_TARGET.finditer(statement)]
    return list(dict.fromkeys(t for t in found if t.split(".", 1)[0].lower() in names))
