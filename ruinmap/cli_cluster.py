"""Sub-commands about where work runs: `ruinmap cluster ...` (profiles, batch scripts)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Runner = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {}
