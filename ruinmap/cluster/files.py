"""Turning the file names and globs a user gives into the files they mean."""

from __future__ import annotations

import glob
import os
from pathlib import Path


def match_files(pattern: str | os.PathLike[str]) -> list[Path]:
    """The regular files named by `pattern`: a glob (sorted, `**` recursive) or one path.

    `~` is expanded. Returns an empty list when nothing matches, and for a folder (callers say
    what to do about it: `is_folder_pattern`).
    """
    text = os.path.expanduser(os.fspath(pattern))
    if glob.has_magic(text):
        matches = sorted(glob.glob(text, recursive=True))
        return [Path(m) for m in matches if os.path.isfile(m)]
    path = Path(text)
    return [path] if path.is_file() else []


def is_folder_pattern(pattern: str | os.PathLike[str]) -> bool:
    """True when `pattern` names a folder, not files (a common slip: `pre/` for `pre/*.tif`)."""
    text = os.path.expanduser(os.fspath(pattern))
    return not glob.has_magic(text) and os.path.isdir(text)
