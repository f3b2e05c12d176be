"""Turning the file names and globs a user gives (local or s3://) into the files they mean.

`expand_inputs(patterns)` is the one expansion of the project: the ingest raises on the first
pattern that matches nothing, the job spec lists every such pattern with its key; both say why
from the same `Expansion.reason`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ruinmap.cluster.storage.location import LocalPath, Location, ObjectURL, as_location, is_url

__all__ = ["Expansion", "expand_inputs", "is_folder_pattern", "match_files"]


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


@dataclass(frozen=True)
class Expansion:
    """What one pattern matched, and why nothing when it matched nothing.

    `reason`: None (it matched), "folder" (a folder or prefix, not files), "no match" (a glob
    that matches nothing), "missing" (a plain path that does not exist), or "unlistable: <why>"
    (object storage refused the listing: credentials, endpoint, bucket).
    """

    pattern: str
    files: tuple[Location, ...]
    reason: str | None

    @property
    def is_remote(self) -> bool:
        return is_url(self.pattern)

    def folder_hint(self) -> str:
        """A glob for the files of the folder the pattern names, e.g. 'pre/*.tif'."""
        if self.is_remote:
            return f"{self.pattern.rstrip('/')}/*.tif"
        return os.path.join(self.pattern, "*.tif")


def _expand_url(pattern: str) -> Expansion:
    url = as_location(pattern)
    assert isinstance(url, ObjectURL)
    try:
        urls = url.glob()
    except (OSError, ValueError) as exc:  # credentials, endpoint, bucket
        return Expansion(pattern, (), f"unlistable: {exc}")
    if urls:
        return Expansion(pattern, tuple(urls), None)
    try:
        folder = url.is_dir()
    except (OSError, ValueError):
        folder = False
    return Expansion(pattern, (), "folder" if folder else "no match")


def _expand_path(pattern: str) -> Expansion:
    matched = match_files(pattern)
    if matched:
        return Expansion(pattern, tuple(LocalPath(p.absolute()) for p in matched), None)
    if is_folder_pattern(pattern):
        return Expansion(pattern, (), "folder")
    return Expansion(pattern, (), "no match" if glob.has_magic(pattern) else "missing")


def expand_inputs(
    patterns: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
) -> tuple[tuple[Location, ...], list[Expansion]]:
    """Files named by `patterns` (paths or globs, local or s3://), sorted per pattern, in the
    given order, each once; local files absolute.

    Returns the files and every pattern's `Expansion` (callers report those that matched
    nothing, in their own words).
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    expansions = [
        _expand_url(str(p)) if is_url(p) else _expand_path(os.fspath(p)) for p in patterns
    ]
    files = dict.fromkeys(f for e in expansions for f in e.files)
    return tuple(files), expansions
