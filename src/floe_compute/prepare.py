"""What a query is made of before anything reaches the engine: its checked arguments, its
:class:`~floe_compute.context.QueryContext` and the statement to run.

Everything here raises before a connection is taken: a bad argument costs nothing on the engine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import Sequence, select, text

from floe_compute.config import check_timeout
from floe_compute.context import Params, QueryContext
from floe_compute.errors import ConfigError
from floe_compute.hooks import EngineHooks
from floe_compute.sql import bindable_text, text_facts
from floe_compute.timeouts import QueryHandle

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.base import Executable
    from sqlalchemy.sql.elements import TextClause

__all__ = ["check_batch_size", "check_tags", "match_placeholders", "new_context", "statement"]

MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_QUERY_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def new_query_id() -> str:
    """64 random bits from ``random`` (seeded from the OS, reseeded after a fork): ``uuid4()``'s
    ``os.urandom`` call drops the GIL on every query, and under threads each drop costs a wait."""
    return f"q-{random.getrandbits(64):016x}"


def new_context(
    hooks: EngineHooks,
    sql: str | Executable,
    timeout: float | None,
    query_id: str | None,
    tags: Mapping[str, str] | None,
) -> QueryContext:
    """The context of a new query: its id, summary, deadline and tags, all checked (and a string
    of one statement, unless the engine runs scripts)."""
    config = hooks.config
    timeout = config.timeouts.query if timeout is None else check_timeout(timeout)
    if query_id is not None and not (isinstance(query_id, str) and _QUERY_ID.match(query_id)):
        raise ConfigError(
            f"query_id {query_id!r} is not valid: expected 1-128 characters of letters, digits and _ . : -"
        )
    sql_text = sql if isinstance(sql, str) else str(sql)
    written = sql_text is sql  # a string as given, not an SQLAlchemy construct's text
    summary, operation, count = text_facts(sql_text, hooks.sql_dialect)
    context = QueryContext(
        query_id=query_id or new_query_id(),
        summary=summary,
        operation=operation,
        timeout=timeout,
        max_rows=config.limits.max_result_rows,
        tags={} if tags is None else check_tags(tags),
    )
    context.handle = QueryHandle(context.query_id, timeout, None)
    if written and count > 1 and not hooks.runs_scripts:
        name = hooks.name
        raise context.error(
            name,
            f"{name}: query {context.query_id} ({summary}): the string holds {count} statements; "
            f"run them one at a time ({name} runs one statement per execute())",
        )
    return context


def check_batch_size(batch_size: int | None) -> int | None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
    ):
        raise ConfigError(f"batch_size must be a positive integer (got {batch_size!r})")
    return batch_size


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Tags as given, or a :class:`ConfigError` naming the first tag that is not valid."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigError(f"tags must be a mapping of strings to strings (got {type(tags).__name__})")
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"tags: at most {MAX_TAGS} tags (got {len(tags)})")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key) or len(key) > MAX_TAG_KEY:
            raise ConfigError(
                f"tag {key!r}: a tag name is 1-{MAX_TAG_KEY} characters of letters, digits and _ . -, "
                "starting with a letter or _"
            )
        if not isinstance(value, str):
            raise ConfigError(f"tag {key!r}: the value must be a string (got {type(value).__name__})")
        if len(value) > MAX_TAG_VALUE or not value.isprintable():
            raise ConfigError(
                f"tag {key!r}: the value must be at most {MAX_TAG_VALUE} printable characters "
                f"(got {len(value)} characters)"
            )
        checked[key] = value
    return checked


def statement(hooks: EngineHooks, sql: str | Executable, params: Params | None) -> str | Executable:
    """What to run: a string without parameters as written; with parameters through ``text()``,
    binding only its real ``:name`` placeholders (not a colon inside a literal or a comment)."""
    if isinstance(sql, Sequence):  # what SQLAlchemy executes as a scalar, as a query
        return select(sql.next_value())
    if not isinstance(sql, str):
        return sql
    return text(bindable_text(sql, hooks.sql_dialect)) if params else sql


def match_placeholders(
    hooks: EngineHooks, dialect: Dialect, clause: TextClause, params: Params, context: QueryContext
) -> None:
    """The parameters given are exactly the statement's ``:name`` placeholders."""
    expected = set(clause.compile(dialect=dialect).params)
    given = set(params)
    if given == expected:
        return
    problems = []
    if expected - given:
        problems.append("missing " + ", ".join(f":{p}" for p in sorted(expected - given)))
    if given - expected:
        problems.append("unexpected " + ", ".join(f":{p}" for p in sorted(given - expected)))
    takes = ", ".join(f":{p}" for p in sorted(expected)) or "no parameters"
    raise context.error(
        hooks.name,
        f"{hooks.name}: query {context.query_id} ({context.summary}): parameters do not "
        f"match the statement: {'; '.join(problems)} (the statement takes {takes})",
    )
