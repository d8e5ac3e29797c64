"""The process around a command: exit statuses, one-line errors, Ctrl-C, log lines and the garbage
collector during start-up. Nothing here knows a command; the commands and ``main`` use it."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

from floe_compute.errors import ComputeError, ConfigError, QueryTimeoutError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "PROG",
    "Interrupts",
    "UsageError",
    "error",
    "failure",
    "pause_collection",
    "quiet_library",
    "started",
    "stdout_closed",
]

PROG = "floe-compute"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


def error(message: str) -> None:
    """One line on stderr; stderr failing as well is ignored."""
    line = " ".join(message.split())
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{PROG}: error: {line}\n")
        sys.stderr.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def quiet_library(verbose: bool) -> Iterator[None]:
    """Keep the library's log lines and Python warnings off the terminal unless ``--verbose``.

    Errors reach the user as the one-line message; the structured log record of a timeout or
    SQLAlchemy's warning about a dialect's statement cache would only repeat or clutter it.
    Everything is restored afterwards, so ``main()`` can be called in-process.
    """
    import logging

    logger = logging.getLogger("floe_compute")
    saved = (logger.propagate, logger.level)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.propagate = False
    with warnings.catch_warnings():
        if not verbose and not sys.warnoptions:
            warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate, logger.level = saved


class Interrupts:
    """Remembers a Ctrl-C: DuckDB turns SIGINT into its own "Query interrupted" error, which must
    still end the command as interrupted (130), not as a failed query."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.seen:  # the second Ctrl-C: the user does not want to wait for the clean-up
            error("interrupted")
            os._exit(EXIT_INTERRUPTED)
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.default_int_handler:  # not when SIGINT is ignored or handled
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def stdout_closed() -> bool:
    """``floe-compute ... >&-``: Python starts without a ``sys.stdout``. Descriptor 1 is then
    pointed at /dev/null, so that no file the engine opens can take its number and receive rows."""
    if sys.stdout is not None:
        return False
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 1:
            os.dup2(devnull, 1)
            os.close(devnull)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return True


def failure(exc: Exception) -> int:
    """Report a failure in one line (never a traceback) and return its exit status."""
    if isinstance(exc, BrokenPipeError):  # the reader went away (``| head``): nothing to report
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, ComputeError | UsageError):
        error(str(exc))
        if isinstance(exc, QueryTimeoutError):
            return EXIT_TIMEOUT
        return EXIT_USAGE if isinstance(exc, ConfigError | UsageError) else EXIT_ERROR
    error(f"unexpected {type(exc).__name__}: {exc}")
    return EXIT_ERROR


_collection_paused = False


def started() -> None:
    """Start-up is over (the plugin exists): the garbage collector resumes if
    :func:`floe_compute.cli.run` paused it. What start-up built lives until exit, so it is first
    frozen (``gc.freeze``): the collections a long result triggers then do not walk all of
    SQLAlchemy and pydantic either."""
    global _collection_paused
    if _collection_paused:
        _collection_paused = False
        gc.freeze()
        gc.enable()


def pause_collection() -> None:
    """Pause the garbage collector for the start-up (see :func:`floe_compute.cli.run`), until
    :func:`started`."""
    global _collection_paused
    if gc.isenabled():
        gc.disable()
        _collection_paused = True
