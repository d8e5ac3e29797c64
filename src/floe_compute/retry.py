"""The ``retry`` section of the config: how often a read is run again after a lost connection.

A statement is run again only when that cannot change anything: it only reads, no row of it was
handed out, it is not in a session, and the engine says the connection was lost (or that it never
ran the statement). The decision itself is made by the query lifecycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RetryConfig"]


class RetryConfig(BaseModel):
    """Safe retries of reads."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True)

    reads: int = Field(default=1, ge=0, le=5, strict=True)
    """How many times a read whose connection was lost before its first row is run again, on a
    fresh connection and within its own deadline; ``0`` never retries. Writes never are."""
