"""Ctrl-C of a command that runs a Dask cluster: one line and a clean stop, not tracebacks.

A terminal sends SIGINT to the whole foreground process group, so without care every local
worker process dies with its own KeyboardInterrupt traceback, the client is interrupted inside
distributed's `sync` (which logs a tornado `NameError` of its own), and the scheduler logs
the keys it could not gather. Here:

- `sigint_ignored()`: the local cluster's worker processes are started with SIGINT ignored
  (an ignored signal stays ignored across `exec`, and Python then installs no
  KeyboardInterrupt handler), so only the client reacts and it closes them;
- `graceful_interrupts()`: in the client, the first Ctrl-C silences distributed's and
  tornado's loggers (what they say while a cluster is torn down mid-task is noise) and
  raises KeyboardInterrupt, so the `with` blocks close the client and the cluster; a second
  Ctrl-C, should closing hang, ends the process at once with status 130.

Both change signal handlers only in the main thread (Python allows no other), and do nothing
elsewhere (the job service runs jobs on threads of its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["INTERRUPTED_STATUS", "graceful_interrupts", "sigint_ignored"]

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it
_NOISY_LOGGERS = ("distributed", "tornado", "asyncio", "bokeh")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the block (processes started in it inherit that)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def graceful_interrupts(message: str) -> Iterator[None]:
    """The first Ctrl-C quiets Dask's loggers and raises KeyboardInterrupt; a second one
    prints `message` and exits with status 130 at once."""
    if not _in_main_thread():
        yield
        return

    def again(signum: int, frame: FrameType | None) -> None:
        print(message, file=sys.stderr, flush=True)
        os._exit(INTERRUPTED_STATUS)

    def first(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, again)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
