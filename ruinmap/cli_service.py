"""Sub-commands of the job service and its client: serve, submit, jobs, status, results, cancel."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Runner = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {}
