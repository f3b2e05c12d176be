"""Swapping a file for a link at an exact moment of a real cluster's work: a Dask worker
plugin that replaces a file by a symlink as a task whose key starts with a prefix begins to
execute on a worker (after every check the client made, before the task opens anything)."""

from __future__ import annotations

import os
from typing import Any

from distributed import WorkerPlugin

__all__ = ["SwapBeforeTask"]


class SwapBeforeTask(WorkerPlugin):
    """Replace `target` by a symlink to `link_to` (atomically, once) when a task with a key
    starting with `key_prefix` moves to `executing` on a worker."""

    def __init__(self, key_prefix: str, target: str, link_to: str) -> None:
        self.key_prefix, self.target, self.link_to = key_prefix, target, link_to

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        # the worker calls this before it hands the task to its thread pool
        if finish != "executing" or not str(key).startswith(self.key_prefix):
            return
        if os.path.islink(self.target):
            return
        staged = f"{self.target}.swap-{os.getpid()}"
        os.symlink(self.link_to, staged)
        os.replace(staged, self.target)  # one rename: the name is never missing
