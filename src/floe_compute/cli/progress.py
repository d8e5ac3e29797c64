"""The ``--progress`` line of ``query``: rows and rows/s on stderr while the result streams."""

from __future__ import annotations

import contextlib
import threading
import time

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["Progress", "isatty"]


def _rate(rows: int, seconds: float) -> str:
    per_second = rows / seconds if seconds > 0 else 0.0
    return f"{rows:,} rows  {per_second:,.0f} rows/s  {seconds:.1f}s"


class Progress:
    """A rows and rows/s line on stderr, from a background thread.

    It first appears after one second, then updates at most every 0.5 s. On a terminal it is one
    line redrawn in place and erased at the end (and before each batch written to stdout, so rows
    on the same terminal are not mixed with it); elsewhere (``--progress`` into a file) each update
    is its own line.
    """

    FIRST = 1.0
    EVERY = 0.5

    def __init__(self, err: TextIO, running: Any = None) -> None:
        self._err = err
        self._running = running
        self.tty = isatty(err)
        self.lock = threading.Lock()
        self.rows = 0
        self._shown = False
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floe-compute-progress", daemon=True)

    def start(self) -> Progress:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._stop.wait(self.FIRST):
            return
        while True:
            with self.lock:
                if self._stop.is_set():
                    return
                self._draw()
            if self._stop.wait(self.EVERY):
                return

    def _draw(self) -> None:
        if not self.rows and self._running is not None and not self._running():
            return  # not started on the engine yet (connecting, loading extensions)
        line = _rate(self.rows, time.monotonic() - self._started)
        try:
            if self.tty:
                self._err.write(f"\r{line}\x1b[K")
                self._shown = True
            else:
                self._err.write(line + "\n")
            self._err.flush()
        except (OSError, ValueError):  # stderr went away; progress is best effort
            self._stop.set()

    def clear(self) -> None:
        """Erase the line (the caller holds ``lock``)."""
        if self._shown:
            with contextlib.suppress(OSError, ValueError):
                self._err.write("\r\x1b[K")
                self._err.flush()
            self._shown = False

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.clear()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
