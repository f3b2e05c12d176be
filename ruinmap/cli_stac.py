"""`ruinmap stac search`: argument parsing and printing only (see cli.py for the pattern)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

Runner = Callable[[argparse.Namespace], int]


def print_summary(rows: Sequence[Any], bbox: Sequence[float] | None) -> None:
    """One line per acquisition: side, date, orbit, coverage of the area, its items."""
    area = "the area" if bbox is None else "(" + ", ".join(repr(float(v)) for v in bbox) + ")"
    for side in ("pre", "post"):
        mine = [r for r in rows if r.side == side]
        n_items = sum(len(r.items) for r in mine)
        print(f"{side}: {len(mine)} date(s) from {n_items} item(s)")
        for r in mine:
            orbit = "orbit ?" if r.orbit is None else f"orbit {r.orbit}"
            if r.orbit_state:
                orbit += f" {r.orbit_state}"
            cover = "" if r.coverage is None else f", covers {100 * r.coverage:.1f} % of {area}"
            print(f"  {r.day} {orbit}: {len(r.items)} item(s){cover}")
            for item in r.items:
                print(f"    {item}")


def _add_stac(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "stac",
        help="what a job's [inputs.stac] would use, before any pixel moves",
        description=(
            "`ruinmap stac search JOB`: run the job's STAC search (an API or a static "
            "catalog) and print, per side, each acquisition (date and relative orbit), how "
            "much of the area its items cover, and the items that would be mosaicked into it. "
            "Reads item metadata only: no asset is opened."
        ),
    )
    p.add_argument("action", choices=["search"], help="search: list the items a job would use")
    p.add_argument("spec", metavar="JOB", help="job spec (TOML or JSON) with [inputs.stac]")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cluster.ingest.stac import search_summary
        from ruinmap.cluster.job.spec import load_spec
        from ruinmap.cluster.job.spec.files import validate_spec_files
        from ruinmap.errors import SpecError

        spec = load_spec(args.spec)
        if spec.inputs.stac is None:
            raise SpecError(f"{args.spec}: [inputs] has no stac table; nothing to search")
        files = validate_spec_files(spec)
        assert files.stac is not None  # set whenever inputs.stac is
        print_summary(search_summary(files.stac), files.stac.bbox)
        return 0

    return run


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {
    "stac": _add_stac,
}
