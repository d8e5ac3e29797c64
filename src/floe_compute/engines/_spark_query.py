"""What a Spark query's statement (its Thrift cursor) and the engine's ``cancel`` share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SparkQuery"]


@dataclass
class SparkQuery:
    """``context.state(SparkQuery)``: the operation on the server and where it stands."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    operation: Any = None
    """The statement's Thrift operation handle, once the server knows it."""
    cancel_requested: bool = False
    """A cancel came before the operation existed: the query's own thread sends it on arrival."""
    executed: bool = False
    """The statement finished executing; its rows are fetched now."""
    fetch_started: float | None = None
    """When the fetch in flight began (its job may not be submitted yet), else None."""
    settle: bool = False
    """Cancelled while executing: the operation is closed later, once late stages have started."""
