"""BigQuery through google-cloud-bigquery and sqlalchemy-bigquery.

Every statement is a query job inserted under an id of ours (``jobs.insert``, never ``jobs.query``),
so the cancel hook knows which job to stop before the job has answered, and SQL errors surface
(the ``jobs.query`` shortcut hides them on some endpoints). The job carries the query's deadline
(``job_timeout_ms``), the byte limit (``maximum_bytes_billed``) and the tags as job labels.

Nothing in the REST client can be interrupted: a call blocks until BigQuery answers. So each
blocking call of a query (the job's insert and wait, each page of results) runs in a helper thread
that the caller waits on, and ``cancel`` wakes the caller at once while ``jobs.cancel`` goes out in
the background; the abandoned call finishes (or fails) on its own and its answer is dropped.
Rows and Arrow batches both come from the client's own Arrow conversion, one REST page at a time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.oauth2.service_account import Credentials as Credentials_
from sqlalchemy.engine import URL

from floe_compute.config import ComputeConfig
from floe_compute.context import QueryContext
from floe_compute.engines import _bigquery_load, _bigquery_session
from floe_compute.engines._bigquery_config import BigQueryConfig, BigQueryLimits, job_labels, key_info
from floe_compute.engines._bigquery_jobs import BigQueryQuery, JobCursor
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
)
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
    from sqlalchemy.engine import Connection

    from floe_compute.context import SessionPin

__all__ = ["BigQueryComputePlugin", "BigQueryConfig", "BigQueryLimits", "job_labels"]

log = logging.getLogger("floe_compute")

SCOPES = ("https://www.googleapis.com/auth/bigquery",)
CANCEL_TIMEOUT_S = 10.0
"""How long the background ``jobs.cancel`` request may take; nobody waits for it."""
CANCEL_RETRY_PAUSES_S = (0.5, 2.0)
"""Pauses before sending a failed ``jobs.cancel`` again."""
# BigQuery's documented error reasons (ErrorProto.reason) and what the caller gets for them
_RESOURCE_REASONS = {"bytesBilledLimitExceeded", "billingTierLimitExceeded", "resourcesExceeded"}
_RESOURCE_REASONS |= {"responseTooLarge", "quotaExceeded", "rateLimitExceeded"}


# -- the plugin ------------------------------------------------------------------------------------


class BigQueryComputePlugin(ComputePlugin):
    """BigQuery: one REST client shared by the pool; each query a labelled, bounded job."""

    name = "bigquery"
    schemes = ("bigquery",)
    config_class = BigQueryConfig
    db_system = "gcp.bigquery"
    sql_dialect = "bigquery"
    default_pre_ping = False  # a ping is a query job: billed, and slow
    default_batch_size = 10_000
    load_path = (
        "Arrow appended to a PENDING Storage Write API stream, committed once "
        "(with api_endpoint and no storage_endpoint: one Parquet load job)"
    )
    load_batches = _bigquery_load.load_batches

    def __init__(self, config: ComputeConfig) -> None:
        super().__init__(config)
        self._client: bigquery.Client | None = None
        self._write_client: BigQueryWriteClient | None = None
        self._write_lock = threading.Lock()

    if TYPE_CHECKING:  # the core checked it is a BigQueryConfig (config_class); no override to call

        @property
        def config(self) -> BigQueryConfig: ...

    @property
    def client(self) -> bigquery.Client:
        """The ``google.cloud.bigquery.Client`` every pooled connection uses."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    @property
    def write_client(self) -> BigQueryWriteClient | None:
        """The Storage Write API client loads stream to; None where loads are load jobs."""
        with self._write_lock:
            if self._write_client is None:
                self._write_client = _bigquery_load.write_client(self)
            return self._write_client

    def credentials(self) -> Credentials:
        """The key's credentials; else application default ones; anonymous for an endpoint alone."""
        config = self.config
        key, what = config.credentials_file, f"credentials_file {config.credentials_file}"
        try:
            if key is not None:
                return Credentials_.from_service_account_file(str(key), scopes=SCOPES)  # type: ignore[no-untyped-call,no-any-return]
            if config.credentials_json is not None:
                what = "credentials_json"
                info = key_info(config.credentials_json.get_secret_value())
                return Credentials_.from_service_account_info(info, scopes=SCOPES)  # type: ignore[no-untyped-call,no-any-return]
            if config.api_endpoint is not None:
                return AnonymousCredentials()  # type: ignore[no-untyped-call]
            what = "application default credentials"
            return google.auth.default(scopes=SCOPES)[0]
        except OSError as exc:
            problem = f"cannot read {what}: {exc.strerror}"
        except (ValueError, KeyError):  # never the parser's message: it may quote the key
            problem = f"{what} is not a valid service account key"
        except google.auth.exceptions.DefaultCredentialsError:
            problem = "no credentials given and no application default credentials found"
        raise ConnectionFailedError(f"BigQuery project {config.project}: {problem}", engine=self.name)

    def _make_client(self) -> bigquery.Client:
        config = self.config
        options = ClientOptions(api_endpoint=config.api_endpoint) if config.api_endpoint else None
        return bigquery.Client(
            project=config.project,
            credentials=self.credentials(),
            location=config.location,
            client_options=options,
        )

    def engine_url(self) -> URL:
        config = self.config
        # arraysize: the REST page size when a query gives no batch size
        query = {"user_supplied_client": "true", "arraysize": str(self.default_batch_size)}
        query |= {"location": config.location} if config.location else {}
        return URL.create("bigquery+floe", host=config.project, database=config.dataset, query=query)

    def engine_options(self) -> dict[str, Any]:
        args = {"client": self.client, "prefer_bqstorage_client": self.config.use_storage_api}
        return {"connect_args": args, "floe_job_config": self.job_config}

    def job_config(self, context: QueryContext | None = None) -> bigquery.QueryJobConfig:
        """The job configuration of one query: dataset, priority, byte limit, deadline and labels."""
        config = self.config
        job = bigquery.QueryJobConfig(priority=config.priority.upper())
        if config.dataset:
            job.default_dataset = f"{config.project}.{config.dataset}"
        if config.maximum_bytes_billed is not None:
            job.maximum_bytes_billed = config.maximum_bytes_billed
        if context is not None:
            if context.timeout is not None:
                job.job_timeout_ms = max(1, math.ceil(context.timeout * 1000))
            job.labels = job_labels(context.tags, context.query_id)
            if context.session is not None:
                _bigquery_session.session_fields(job, context.session)
        return job

    # -- sessions: a BigQuery session per block (create_session, then its session_id) -----------

    def begin_transaction(self, connection: Connection, session: SessionPin) -> None:
        _bigquery_session.run_in_session(self, session, "BEGIN TRANSACTION")

    def end_transaction(self, connection: Connection, session: SessionPin, *, commit: bool) -> None:
        end = "COMMIT TRANSACTION" if commit else "ROLLBACK TRANSACTION"
        _bigquery_session.run_in_session(self, session, end)

    def end_session(self, connection: Connection, session: SessionPin) -> bool:
        return _bigquery_session.end_session(self, session)

    def never_ran(self, exc: Exception) -> str | None:
        return _bigquery_session.never_ran(exc)

    def cancel(self, context: QueryContext) -> bool:
        state = context.state(BigQueryQuery)
        with state.lock:
            state.stopped = True
            job_id, woken = state.job_id, state.wake
            send = job_id is not None and state.cancel_sent != job_id
            if send:
                state.cancel_sent = job_id
        if woken is not None:
            woken.set()
        if send:
            threading.Thread(
                target=self._cancel_job, args=(job_id,), name="floe-bigquery-cancel", daemon=True
            ).start()
        return send  # no job yet (the woken caller never submits it), or its cancel already sent

    def _cancel_job(self, job_id: str) -> None:
        """``jobs.cancel``, tried again after a failed request (the query's caller has already
        been woken, so nobody else will ask again); a job that already ended is fine."""
        for attempt, pause in enumerate((*CANCEL_RETRY_PAUSES_S, None), start=1):
            try:
                location, timeout = self.config.location, CANCEL_TIMEOUT_S  # our own, fewer, retries:
                self.client.cancel_job(job_id, location=location, retry=None, timeout=timeout)  # type: ignore[arg-type]
                return
            except api_exceptions.NotFound:
                return  # the job never started: nothing to stop
            except Exception as exc:
                log.debug("bigquery: jobs.cancel %s (attempt %d): %s", job_id, attempt, type(exc).__name__)
                if pause is None:
                    log.warning(
                        "bigquery: jobs.cancel %s failed %d times; the job may still run", job_id, attempt
                    )
                    return
                time.sleep(pause)

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        if not isinstance(dbapi_cursor, JobCursor) or dbapi_cursor.description is None:
            return None
        return dbapi_cursor.arrow_reader(batch_size)

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        if isinstance(exc, dbapi.Error) and exc.args and isinstance(exc.args[0], Exception):
            exc = exc.args[0]  # the DB-API wraps the client's exception as its first argument
        project = f"BigQuery project {self.config.project}"
        if isinstance(exc, google.auth.exceptions.RefreshError):
            reason = str(exc.args[0]) if exc.args else "the token was refused"
            return ConnectionFailedError, f"{project}: the credentials were refused: {reason}"
        if isinstance(exc, google.auth.exceptions.GoogleAuthError | requests.ConnectionError):
            return ConnectionFailedError, f"{project}: {type(exc).__name__}: {exc}"
        if not isinstance(exc, api_exceptions.GoogleAPICallError):
            return None
        errors = [e for e in exc.errors or [] if isinstance(e, dict)]
        reason = str(errors[0].get("reason", "")) if errors else ""
        message = str(errors[0].get("message") or exc.message) if errors else str(exc.message)
        detail = f"{message} (reason {reason or 'unknown'}, HTTP {exc.code})"
        if isinstance(exc, api_exceptions.Unauthorized) or reason == "authError":
            return ConnectionFailedError, f"{project}: the credentials were refused: {detail}"
        if reason == "bytesBilledLimitExceeded":
            limit = self.config.maximum_bytes_billed
            named = f"limits.maximum_bytes_billed={limit} bytes" if limit else "maximum_bytes_billed"
            return ResourceLimitError, f"over {named}: {detail}"
        if reason in _RESOURCE_REASONS:
            return ResourceLimitError, detail
        if reason == "timeout":
            return QueryTimeoutError, detail
        if reason == "stopped":
            return QueryCancelledError, detail
        return QueryError, detail

    def on_dispose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
        with self._write_lock:
            writer, self._write_client = self._write_client, None
        if writer is not None:
            writer.transport.close()  # type: ignore[no-untyped-call]

    # -- dbt --------------------------------------------------------------------------------

    def dbt_target(self) -> dict[str, Any]:
        config = self.config
        if config.dataset is None:
            raise ConfigError("dbt needs a dataset: give it in the URL (bigquery://PROJECT/DATASET)")
        target: dict[str, Any] = {"type": "bigquery", "project": config.project, "dataset": config.dataset}
        if config.credentials_file is not None:
            target |= {"method": "service-account", "keyfile": str(config.credentials_file)}
        elif config.credentials_json is not None:
            info = key_info(config.credentials_json.get_secret_value())
            key = {k: v for k, v in info.items() if k != "private_key"}
            key["private_key"] = f"{{{{ env_var('{config.dbt_private_key_env}') }}}}"
            target |= {"method": "service-account-json", "keyfile_json": key}
        elif config.api_endpoint is not None:
            # an emulator takes any token; dbt-bigquery has no anonymous method
            target |= {"method": "oauth-secrets", "token": "anonymous"}
        else:
            target["method"] = "oauth"
        target["threads"] = config.pool.size
        if config.location:
            target["location"] = config.location
        target["priority"] = config.priority
        if config.timeouts.query is not None:
            target["job_execution_timeout_seconds"] = max(1, math.ceil(config.timeouts.query))
        if config.maximum_bytes_billed is not None:
            target["maximum_bytes_billed"] = config.maximum_bytes_billed
        if config.api_endpoint:
            target["api_endpoint"] = config.api_endpoint
        return target

    def dbt_env(self) -> dict[str, str]:
        config = self.config
        if config.credentials_json is None:
            return {}
        key = key_info(config.credentials_json.get_secret_value()).get("private_key")
        return {config.dbt_private_key_env: str(key)} if key else {}
