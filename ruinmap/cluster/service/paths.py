"""Where a job may read and write: inputs under the data roots, outputs under the output root.

Rules, checked on the text a client sent and again on the real paths (symlinks resolved):

- no URL schemes (`file://`, `s3://`, `http:` ...) and no `~`: 400 (the set of allowed
  schemes is empty: the service reads local files only);
- no `..` component anywhere: 400;
- relative input paths resolve against the first data root, relative output folders
  against the output root;
- an absolute path, or a relative one whose real path (symlinks resolved) leaves every
  allowed root: 403. Globs are checked twice: the folder part before the first wildcard,
  then every file they match.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ruinmap.cluster.service.problems import RequestError
from ruinmap.cluster.storage.confined import references_files
from ruinmap.cluster.storage.globs import match_files

__all__ = ["PathPolicy"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_MAGIC = re.compile(r"[*?\[]")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _references_files(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return references_files(fh.read(4096))
    except OSError:
        return False


@dataclass(frozen=True)
class PathPolicy:
    """The configured roots, real paths (symlinks resolved) made once."""

    data_roots: tuple[Path, ...]
    output_root: Path

    @classmethod
    def of(cls, data_roots: Sequence[Path], output_root: Path) -> PathPolicy:
        return cls(tuple(Path(os.path.realpath(r)) for r in data_roots),
                   Path(os.path.realpath(output_root)))

    # -- the text as sent

    @staticmethod
    def check_text(text: str, key: str) -> None:
        """Refuse (400) URL schemes, `~`, NUL bytes and `..` components in a client's path."""
        if "\x00" in text:
            raise RequestError(400, "Bad path", f"{key}: the path contains a NUL byte")
        if _SCHEME.match(text) or "://" in text:
            raise RequestError(
                400, "URL not allowed",
                f"{key}: '{text}' is a URL; the service reads only files under its data roots, "
                "given as paths relative to the first data root or absolute paths inside one",
            )  # fmt: skip
        if text.startswith("~"):
            raise RequestError(400, "Bad path", f"{key}: '{text}': '~' is not expanded here; "
                               "give a path relative to the data root")
        parts = Path(text.replace("\\", "/")).parts
        if len(text.encode()) > 4096 or any(len(p.encode()) > 255 for p in parts):
            raise RequestError(400, "Bad path", f"{key}: the path is too long (at most 255 "
                               "bytes a name, 4096 in all)")
        if ".." in parts:
            raise RequestError(400, "Bad path", f"{key}: '{text}' contains '..'; give a path "
                               "inside the data roots without '..'")

    # -- inputs

    def input_base(self) -> Path:
        if not self.data_roots:
            raise RequestError(403, "Forbidden path", "this service has no data roots "
                               "configured ([paths] data_roots), so no job can read inputs")
        return self.data_roots[0]

    def _in_data_roots(self, real: Path) -> bool:
        return any(_inside(real, root) for root in self.data_roots)

    def check_input(self, path: str | Path, key: str) -> Path:
        """The real path of an input file or folder; 403 unless inside a data root, and 403
        for a file that names other files (a GDAL or OGR VRT), which could lie anywhere."""
        real = Path(os.path.realpath(path))
        if not self._in_data_roots(real):
            raise RequestError(
                403, "Forbidden path",
                f"{key}: '{path}' is outside the service's data roots "
                f"({', '.join(str(r) for r in self.data_roots) or 'none configured'})",
            )  # fmt: skip
        if real.is_file() and _references_files(real):
            raise RequestError(
                403, "Forbidden file",
                f"{key}: '{path}' is a VRT, which reads other files by their names; the "
                "service reads only files under its data roots, so give the files themselves",
            )  # fmt: skip
        return real

    def check_input_glob(self, pattern: str, key: str) -> list[Path]:
        """Check a glob's fixed folder part, then every file it matches, expanded as the
        ingest expands it (`**` recursive, symlinks resolved)."""
        fixed = _MAGIC.split(pattern, maxsplit=1)[0]
        folder = fixed if fixed.endswith(os.sep) or not _MAGIC.search(pattern) else \
            os.path.dirname(fixed)
        self.check_input(folder or os.sep, key)
        matches = match_files(pattern) if _MAGIC.search(pattern) else \
            [Path(p) for p in glob.glob(pattern)]
        return [self.check_input(match, key) for match in matches]

    # -- outputs

    def output_dir(self, text: str | None, default_name: str) -> Path:
        """The job's output folder: `text` (relative to the output root, or absolute inside
        it), else `output_root/default_name`; 403 if it (or a symlink on the way) leaves the
        output root, 400 for the root itself."""
        candidate = self.output_root / default_name if text is None else Path(text)
        if text is not None and not candidate.is_absolute():
            candidate = self.output_root / candidate
        real = Path(os.path.realpath(candidate))
        if not _inside(real, self.output_root):
            raise RequestError(
                403, "Forbidden path",
                f"output.dir: '{text}' is outside the service's output root; give a folder "
                "name relative to it",
            )  # fmt: skip
        if real == self.output_root:
            raise RequestError(400, "Bad path", "output.dir: give a folder inside the output "
                               "root, not the root itself")
        return real

    def check_output(self, path: str | Path, key: str) -> Path:
        """A path the job writes into must resolve inside the output root (403 otherwise)."""
        real = Path(os.path.realpath(path))
        if not _inside(real, self.output_root):
            raise RequestError(403, "Forbidden path",
                               f"{key}: '{path}' is outside the service's output root")
        return real
