"""Whose folder `output.dir` is: a run writes only into a folder that is empty, or that a
ruinmap job created.

`claim_output_dir(folder)`, called before any work:

- a missing or empty folder is claimed: the marker `.ruinmap-output` is written into it
  first, before the store, the work folder or any product;
- a folder holding the marker (or the `.ruinmap-job/job.json` of a job run before markers
  existed) is a ruinmap folder: its products may be replaced and its job resumed;
- anything else, a folder holding the user's own files (their `map.png`, `districts.csv`, a
  GeoTIFF), is a `SpecError` naming the folder, so ruinmap never overwrites them.

Inside a ruinmap folder, the work folder `.ruinmap-job/` may hold only what ruinmap writes
there (`workdir.WORK_ENTRIES`); another file in it is an error too, since a job that starts
over empties that folder. Temporaries a killed run left (`.score.tmp-1a2b3c4d.tif`,
`durable.TEMP_MARK`) are removed from the folder and the work folder: while the job runs
nothing else writes there (the job service gives every job its own folder).
"""

from __future__ import annotations

import json

from ruinmap import __version__
from ruinmap.cluster.job.workdir import JOB_MARKER, WORK_DIR, WORK_ENTRIES
from ruinmap.cluster.storage.durable import TEMP_MARK, remove_stale_temporaries
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import SpecError

__all__ = ["OUTPUT_MARKER", "claim_output_dir"]

OUTPUT_MARKER = ".ruinmap-output"
_SHOWN = 5  # names quoted in an error


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (TEMP_MARK in name or ".old-" in name)


def claim_output_dir(folder: Location) -> None:
    """Make sure the job may write into `folder` (see the module docstring), marking a new
    folder as ruinmap's and removing the temporaries an earlier, killed run left in it.

    Raises SpecError when `folder` holds files ruinmap did not write.
    """
    names = folder.list_names()
    if not names:
        folder.ensure_folder()
        folder.join(OUTPUT_MARKER).write_durably(_marker_body())
        return
    top = sorted({name.split("/", 1)[0] for name in names})
    if OUTPUT_MARKER not in top:
        if f"{WORK_DIR}/{JOB_MARKER}" not in names:
            raise SpecError(
                f"output.dir {folder}: the folder is not empty and was not made by ruinmap "
                f"(it holds {_listing(top)}); ruinmap writes only into an empty folder or "
                f"one an earlier ruinmap run made (marked by a {OUTPUT_MARKER} file), so "
                "that it never overwrites your files: choose another output.dir"
            )
        # made by a ruinmap job from before the marker existed: mark it now
        folder.join(OUTPUT_MARKER).write_durably(_marker_body())
    foreign = sorted({
        name.split("/")[1] for name in names
        if name.startswith(f"{WORK_DIR}/") and name.split("/")[1] not in WORK_ENTRIES
        and not _is_temporary(name.split("/")[1])
    })
    if foreign:
        raise SpecError(
            f"output.dir {folder}: its work folder {WORK_DIR}/ holds {_listing(foreign)}, "
            f"which ruinmap did not write; move them out of {folder.join(WORK_DIR)} (ruinmap "
            "empties that folder when a job starts over) and re-run"
        )
    if not folder.is_remote:  # object storage has no temporaries: one PUT a file
        for sub in (folder, folder.join(WORK_DIR), folder.join(WORK_DIR, "partials")):
            remove_stale_temporaries(sub)


def _marker_body() -> bytes:
    return json.dumps({"made_by": f"ruinmap {__version__}",
                       "note": "results of ruinmap jobs; ruinmap may replace files here"}
                      ).encode()
