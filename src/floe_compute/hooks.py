"""The engine contract: everything an engine module may declare or override, in one place.

An engine is a subclass of :class:`~floe_compute.ComputePlugin` (the public facade, which inherits
this class). It declares its differences as class attributes and overrides a few hooks; the core
(pool, deadlines, result lifecycle, errors, telemetry, health) is written once and calls them.
The hooks below are grouped by when they are called and on which thread:

========================  =======================================  ==================================
group                     hooks                                    called
========================  =======================================  ==================================
engine creation           ``engine_url``, ``engine_options``,      once per engine, on the thread
                          ``on_dispose``                           that connects / disconnects
connections               ``setup_connection``                     each new DBAPI connection, on the
                                                                   thread that checks it out
sessions                  ``begin_transaction``,                   the session's thread, at the
                          ``end_transaction``, ``end_session``     ends of a transaction or session
per query                 ``begin_query``, ``query_options``,      the query's own thread, in order,
                          ``annotate_statement``                   before the driver is called
stopping                  ``cancel``                               the watchdog's or the canceller's
                                                                   thread, while the query's thread
                                                                   may be blocked in the driver
results                   ``arrow_reader``, ``arrow_type``         the thread reading the result
loading                   ``load_batches``                         the load's own thread
errors                    ``classify_error``                       any thread, on a driver error
dbt                       ``dbt_target``, ``dbt_env``              the caller's thread
========================  =======================================  ==================================

What an engine's dialect and its ``cancel`` share lives in an object of the engine's own type:
``context.state(MyQueryState)`` (see :class:`~floe_compute.context.QueryContext`); a dialect finds
the query of a statement with :func:`~floe_compute.context.query_context`. The helpers an engine
needs to build errors (:meth:`EngineHooks.scrub`, :meth:`EngineHooks.driver_cause`,
:meth:`EngineHooks.connection_error`) are public here.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import exc as sa_exc

from floe_compute.config import ComputeConfig, display_url
from floe_compute.errors import (
    ComputeError,
    ConfigError,
    ConnectionFailedError,
    driver_cause,
    driver_message,
    redact,
)
from floe_compute.masking import mask_values

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa
    from sqlalchemy.engine import URL, Connection

    from floe_compute.context import QueryContext, SessionPin

__all__ = ["EngineHooks"]


class EngineHooks(abc.ABC):
    """The hooks and declarations of one engine; the defaults suit a plain SQLAlchemy dialect."""

    # -- declarations (checked when a concrete engine class is created) --------------------

    name: ClassVar[str]
    """The plugin's name, as ``list_plugins()`` shows it."""
    schemes: ClassVar[tuple[str, ...]]
    """URL backends it claims (``postgresql`` matches ``postgresql+psycopg://``)."""
    db_system: ClassVar[str]
    """The OpenTelemetry ``db.system.name``."""
    config_class: ClassVar[type[ComputeConfig]] = ComputeConfig
    """The engine's config model; limits it cannot honour are declared there."""
    sql_dialect: ClassVar[str | None] = None
    """sqlglot's name for the engine's SQL (quoting, escapes, placeholders); None reads generic SQL."""

    # -- capability flags --------------------------------------------------------------------

    default_pre_ping: ClassVar[bool] = True
    """Whether the pool pings a connection before handing it out, unless ``pool.pre_ping`` says."""
    default_batch_size: ClassVar[int] = 10_000
    """Rows per driver fetch when the caller names no ``batch_size``."""
    short_batch_ends: ClassVar[bool] = False
    """Whether the driver's ``fetchmany(n)`` returns fewer than ``n`` rows only at the end of the
    result: then a short batch ends the read at once (its connection goes back without one more
    fetch to find the end). PEP 249 allows fewer rows at any time, so an engine opts in."""
    ping_statement: ClassVar[str] = "SELECT 1"
    """What ``health_check()`` runs."""
    runs_scripts: ClassVar[bool] = False
    """Whether one ``execute()`` may run several statements (the last one's rows come back);
    otherwise such a string is refused before it reaches the engine."""
    load_path: ClassVar[str | None] = None
    """The native path ``load_arrow`` takes (``docs/loading.md``), or None where the engine has
    none yet (then ``load_arrow`` says so before anything is sent)."""
    has_transactions: ClassVar[bool] = True
    """Whether ``session.transaction()`` can commit several statements together; where False
    (each statement is written as it runs), ``transaction()`` is an error before anything runs."""
    survives_disconnect_reason: ClassVar[str | None] = None
    """Why the data is gone after ``disconnect()`` (an in-memory database), or None when a
    reconnect finds it again. Engines make it a property where it depends on the config."""

    _REQUIRED: ClassVar[tuple[str, ...]] = ("name", "schemes", "db_system")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ABCMeta sets __abstractmethods__ only after this runs: look at the hooks themselves
        abstract = [
            n for n in ("cancel", "dbt_target") if getattr(getattr(cls, n), "__isabstractmethod__", False)
        ]
        if not abstract and not cls.__dict__.get("_abstract"):
            missing = [attr for attr in cls._REQUIRED if not hasattr(cls, attr)]
            if missing:
                raise TypeError(f"{cls.__name__} must declare {', '.join(missing)}")

    def __init__(self, config: ComputeConfig) -> None:
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self._config = config

    @property
    def config(self) -> ComputeConfig:
        return self._config

    @property
    def pool_name(self) -> str:
        """The pool's name in metrics and logs: the target name, else the URL without password."""
        return self._config.name or display_url(self._config.url)

    # -- engine creation ---------------------------------------------------------------------

    def engine_url(self) -> URL:
        """The URL handed to ``create_engine``; an engine may pick its own dialect here."""
        return self._config.sqlalchemy_url()

    def engine_options(self) -> dict[str, Any]:
        """Extra ``create_engine`` options: ``creator``, ``connect_args``, dialect options.

        Called once per engine; whatever it acquires (a client, a cancel session) is released by
        :meth:`on_dispose`. Keep the core's ``poolclass``: it lets a deadline end a checkout.
        """
        return {}

    def on_dispose(self) -> None:  # noqa: B027
        """Release what :meth:`engine_options` acquired, after the pool is disposed."""

    # -- connections -------------------------------------------------------------------------

    def setup_connection(self, dbapi_connection: Any) -> None:  # noqa: B027
        """Prepare a newly opened DBAPI connection: session settings, extensions, catalogs."""

    # -- sessions, on the session's thread -----------------------------------------------------

    def begin_transaction(self, connection: Connection, session: SessionPin) -> None:  # noqa: B027
        """Open a session's transaction; by default the first statement opens it (DBAPI)."""

    def end_transaction(self, connection: Connection, session: SessionPin, *, commit: bool) -> None:
        """Commit or roll back a session's transaction."""
        if commit:
            connection.commit()
        else:
            connection.rollback()

    def end_session(self, connection: Connection, session: SessionPin) -> bool:
        """Clear what a session left on its connection (temp tables, settings) so that it can go
        back to the pool; False (the default) closes the connection instead, which clears all.
        An engine keeps what its sessions need in ``session.state(MySessionState)``."""
        return False

    # -- per query, on the query's thread -----------------------------------------------------

    def begin_query(self, connection: Connection, context: QueryContext) -> None:  # noqa: B027
        """Per-query setup inside the query's transaction, such as the statement timeout."""

    def query_options(self, context: QueryContext) -> dict[str, Any]:
        """Extra SQLAlchemy execution options for the statement."""
        return {}

    def annotate_statement(self, statement: str, context: QueryContext) -> str:
        """The SQL text as sent to the driver, for example with the tags as a comment."""
        return statement

    # -- stopping, on another thread ------------------------------------------------------------

    @abc.abstractmethod
    def cancel(self, context: QueryContext) -> bool:
        """Stop the query on the engine; True if a cancel request went to a statement the engine
        runs, False if there was nothing to stop (so no message claims an engine cancel).

        Called from the watchdog or from ``cancel_query()``'s thread while the query's own thread
        may be blocked in the driver; possibly before the statement reached the driver
        (``context.cursor`` is None) and more than once until the query ends. Must be cheap and
        idempotent; the core repeats it until the query ends.
        """

    # -- results -------------------------------------------------------------------------------

    def arrow_reader(self, dbapi_cursor: Any, batch_size: int) -> pa.RecordBatchReader | None:
        """The driver's own Arrow stream for an executed cursor, or None to build batches."""
        return None

    def arrow_type(self, column: Any, dbapi_cursor: Any) -> pa.DataType | None:
        """The Arrow type of one result column (an entry of ``dbapi_cursor.description``) for
        batches built from rows, or None when the engine cannot tell (then the first batch's
        values decide)."""
        return None

    # -- loading -------------------------------------------------------------------------------

    def load_batches(  # noqa: B027
        self,
        connection: Connection,
        context: QueryContext,
        table: str,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        mode: str,
    ) -> None:
        """Write ``batches`` into ``table`` (quoted, qualified) on the engine's native path, in
        the load's transaction on ``connection`` (committed by the core).

        ``schema``'s names are the table's own columns (matched by the core for ``append``);
        ``create`` makes the table from ``schema`` with the engine's types, ``replace`` drops it
        first. Set ``context.cursor`` before the data moves so ``cancel`` knows it runs. A value
        the engine refuses is a ``QueryError`` naming the column, never the value.
        """

    # -- errors ----------------------------------------------------------------------------------

    def classify_error(self, exc: Exception) -> tuple[type[ComputeError], str] | None:
        """Map a driver error to an error class and a message, or None for the default.

        Classify by what happened (an operation state, an error code), never by words of the
        message: those may come from the user's own identifiers and literals.
        """
        return None

    def never_ran(self, exc: Exception) -> str | None:
        """Why a driver error says the engine never ran the statement (HTTP 429/503 before it
        started, a rate limit), so that a read may safely run again; None (the default) for
        anything else. A lost connection is recognised by the dialect already."""
        return None

    def scrub(self, message: str, context: QueryContext | None = None) -> str:
        """``message`` without secrets of the config, nor the query's bound values."""
        message = redact(message, self._config.secrets)
        if context is not None and context.bound_values:
            message = mask_values(message, context.bound_values)
        return message

    def driver_cause(self, exc: BaseException | None) -> BaseException | None:
        """What to chain as ``__cause__`` of an error built from ``exc`` (scrubbed, or nothing
        when ``errors.keep_driver_cause`` is off)."""
        return driver_cause(exc, self._config.secrets, keep=self._config.errors.keep_driver_cause)

    def connection_error(self, exc: BaseException, doing: str) -> ComputeError:
        """The error for a failure to reach the engine while ``doing`` something."""
        if isinstance(exc, ComputeError):
            return exc
        orig: BaseException = (exc.orig or exc) if isinstance(exc, sa_exc.DBAPIError) else exc
        mapped = self.classify_error(orig) if isinstance(orig, Exception) else None
        where = display_url(self._config.url)
        detail = mapped[1] if mapped else driver_message(orig)
        cls = mapped[0] if mapped and issubclass(mapped[0], ConnectionFailedError) else None
        return (cls or ConnectionFailedError)(
            self.scrub(f"{self.name}: {doing} to {where}: {detail}"), engine=self.name
        )

    # -- dbt -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def dbt_target(self) -> dict[str, Any]:
        """The dbt output (``type:`` and the adapter's keys) for this target."""

    def dbt_env(self) -> dict[str, str]:
        """Environment variables a dbt process needs for the profile: the profile refers to
        secrets with ``env_var()`` and never contains them."""
        return {}
