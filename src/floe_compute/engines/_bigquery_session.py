"""BigQuery sessions: one BigQuery session per ``compute.session()`` block, and its transactions.

The block's first job asks for a session (``create_session``); the id BigQuery answers with
(``statistics.sessionInfo.sessionId``) goes as the connection property ``session_id`` on every
later job of the block, so a temp table or a variable of one statement is there for the next.
``transaction()`` runs ``BEGIN TRANSACTION`` and ``COMMIT TRANSACTION`` / ``ROLLBACK TRANSACTION``
as jobs of the session, and the block's end runs ``CALL BQ.ABORT_SESSION()`` in it (a session
otherwise lives on, billed for nothing, until BigQuery's idle expiry).

Also what says a job never ran: ``rateLimitExceeded`` / ``backendError`` in the answer to
``jobs.insert``; a read is then run again by the core, as a new job with a new job id.

Private to :mod:`floe_compute.engines.bigquery`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery import dbapi

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    from floe_compute.context import QueryContext, SessionPin
    from floe_compute.engines._bigquery_config import BigQueryConfig

__all__ = [
    "BigQueryEngine",
    "BigQuerySession",
    "end_session",
    "never_ran",
    "note_session",
    "run_in_session",
    "session_fields",
]

log = logging.getLogger("floe_compute")

CALL_TIMEOUT_S = 60.0
"""The bound of a session's own job (a transaction's begin or end, the abort)."""
NEVER_RAN_REASONS = frozenset({"rateLimitExceeded", "backendError"})
"""Reasons of a refused ``jobs.insert``: the job was not created, so it never ran."""


class BigQueryEngine(Protocol):
    """What the session and load code use of the plugin (typed without importing it: no cycle)."""

    @property
    def config(self) -> BigQueryConfig: ...
    @property
    def client(self) -> bigquery.Client: ...
    @property
    def write_client(self) -> BigQueryWriteClient | None: ...
    def job_config(self, context: QueryContext | None = None) -> bigquery.QueryJobConfig: ...
    def credentials(self) -> Credentials: ...
    def driver_cause(self, exc: BaseException | None) -> BaseException | None: ...


@dataclass
class BigQuerySession:
    """What a block's jobs share (``session.state(BigQuerySession)``)."""

    session_id: str | None = None
    """BigQuery's id of the session, once its first job answered."""


def session_fields(job: bigquery.QueryJobConfig, pin: SessionPin) -> None:
    """``create_session`` on the block's first job; its ``session_id`` on every later one."""
    state = pin.state(BigQuerySession)
    if state.session_id is None:
        job.create_session = True
    else:
        job.connection_properties = [bigquery.ConnectionProperty("session_id", state.session_id)]


def note_session(pin: SessionPin, job: Any) -> None:
    """Keep the session id the block's first job was answered with."""
    state = pin.state(BigQuerySession)
    info = getattr(job, "session_info", None)
    if state.session_id is None and info is not None and info.session_id:
        state.session_id = info.session_id


def run_in_session(plugin: BigQueryEngine, pin: SessionPin, sql: str) -> None:
    """Run one statement of the session's own (``BEGIN TRANSACTION``...) as a job in it."""
    config = plugin.job_config(None)
    session_fields(config, pin)
    job_id = f"floe_{pin.session_id}_{uuid.uuid4().hex[:12]}"  # s-<hex>: valid in a job id
    job = plugin.client.query(sql, job_config=config, job_id=job_id, job_retry=None, timeout=CALL_TIMEOUT_S)
    job.result(timeout=CALL_TIMEOUT_S)
    note_session(pin, job)


def end_session(plugin: BigQueryEngine, pin: SessionPin) -> bool:
    """Abort the BigQuery session (its temp tables and variables go with it); the pooled DB-API
    connection keeps nothing of it, so it goes back to the pool."""
    if pin.state(BigQuerySession).session_id is None:
        return True
    try:
        run_in_session(plugin, pin, "CALL BQ.ABORT_SESSION()")
    except Exception as exc:  # it expires on its own after BigQuery's idle timeout
        log.debug("bigquery: aborting session %s: %s", pin.session_id, type(exc).__name__)
    return True


def never_ran(exc: Exception) -> str | None:
    """Why a driver error says the job never ran: ``jobs.insert`` refused it with a reason
    BigQuery documents as retryable before anything started; None for anything else."""
    if isinstance(exc, dbapi.Error) and exc.args and isinstance(exc.args[0], Exception):
        exc = exc.args[0]
    reason = _reason(exc)
    if reason not in NEVER_RAN_REASONS:
        return None
    request = getattr(getattr(exc, "response", None), "request", None)
    url = str(getattr(request, "url", "") or "")
    if getattr(request, "method", None) != "POST" or not urlparse(url).path.endswith("/jobs"):
        return None  # the job was created: it may have run
    return f"jobs.insert answered {reason} (HTTP {getattr(exc, 'code', '?')}): the job was never created"


def _reason(exc: BaseException) -> str:
    if not isinstance(exc, api_exceptions.GoogleAPICallError):
        return ""
    errors = [e for e in exc.errors or [] if isinstance(e, dict)]
    return str(errors[0].get("reason", "")) if errors else ""


def insert_retried(exc: Exception) -> bool:
    """The client's own retry of ``jobs.insert`` (same job id), except for the reasons that say
    the job never ran: those come back at once, for the core to run a read again as a new job
    within its deadline (the client would retry them for up to 10 minutes)."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    default: Any = getattr(DEFAULT_RETRY, "_predicate")  # noqa: B009
    return _reason(exc) not in NEVER_RAN_REASONS and bool(default(exc))
