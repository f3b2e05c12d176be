"""`ruinmap validate`: argument parsing and printing only (see cli.py for the pattern)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

Runner = Callable[[argparse.Namespace], int]


def _metric(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def print_validation(report: dict[str, Any]) -> None:
    """A few lines a user can quote: what was read, how it was joined, how well it scores."""
    labels, join, acc = report["labels"], report["join"], report["accuracy"]["buildings"]
    print(f"labels: {labels['path']} ({labels['kind']}, {labels['n_labels']:,} read, "
          f"{labels['n_damaged']:,} damaged = classes {', '.join(labels['damaged_classes'])}; "
          f"epoch {labels['epoch'] or 'undated'})")
    for note in labels["notes"]:
        print(f"  note: {note}")
    print(f"joined: {join['n_scored']:,} scored {join['unit']} ({join['n_damaged']:,} damaged, "
          f"{join['n_undamaged']:,} undamaged; {join['n_not_covered']:,} outside the labels); "
          f"{join['rule']}")
    job = acc["at_thresholds"][0]
    print(f"AUC {_metric(acc['auc'])}; at the job threshold {job['threshold']:g}: precision "
          f"{_metric(job['precision'])}, recall {_metric(job['recall'])}, F1 "
          f"{_metric(job['f1'])}")
    best = acc["best_f1"]
    if best is not None:
        print(f"F1-maximising threshold on these labels {best['threshold']:.3g}: F1 "
              f"{_metric(best['f1'])} (optimistic: chosen on the same labels)")
    area = report["accuracy"]["area"]
    if area is not None:
        print(f"area-weighted: AUC {_metric(area['auc'])}, F1 "
              f"{_metric(area['at_thresholds'][0]['f1'])} at the job threshold")


def _add_validate(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "validate",
        help="hold a finished job's results against ground-truth labels (UNOSAT, xBD, polygons)",
        description=(
            "Read damage labels (UNOSAT damage-site points, xBD label JSON, or any polygon "
            "layer with a class field), mark the job's footprints with them (a damaged point "
            "within --buffer-m of a footprint marks it, as PWTT does) or score the labels "
            "themselves when there are no footprints, and write validation.json, "
            "validation.csv and validation.png (ROC, precision-recall, score histogram), and "
            "the district tables with the damaged-building interval calibrated on the labels."
        ),
    )
    p.add_argument("results", metavar="RESULTS_DIR", help="output.dir of a finished job")
    p.add_argument("--labels", required=True, metavar="FILE", help="the label file")
    p.add_argument("--labels-layer", metavar="L", help="layer of a multi-layer file")
    p.add_argument("--class-field", metavar="F", help="field holding the damage class")
    p.add_argument("--damaged-classes", nargs="+", metavar="C",
                   help="classes that count as damaged (default UNOSAT 1 2 3; xBD "
                   "major-damage destroyed)")
    p.add_argument("--date-field", metavar="D", help="date field of a long-format file")
    p.add_argument("--date", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                   help="label epoch cutoff (default: the last post-event acquisition)")
    p.add_argument("--labels-crs", metavar="CRS",
                   help="the labels' true CRS when the file declares a wrong one")
    p.add_argument("--buffer-m", type=float, default=10.0, metavar="M",
                   help="join distance of label points to footprints (default 10)")
    p.add_argument("--level", type=float, default=0.9,
                   help="confidence level of the count intervals (default 0.9)")
    p.add_argument("--out", metavar="DIR", help="where to write (default RESULTS_DIR)")

    def run(args: argparse.Namespace) -> int:
        from pydantic import ValidationError

        from ruinmap.cli_logging import log_to_terminal
        from ruinmap.cluster.job.spec import join_problems
        from ruinmap.cluster.job.spec.messages import describe_error
        from ruinmap.cluster.validation.config import ValidationSpec
        from ruinmap.cluster.validation.run import validate
        from ruinmap.errors import SpecError

        log_to_terminal()
        options = {"labels": args.labels, "layer": args.labels_layer,
                   "class_field": args.class_field, "damaged_classes": args.damaged_classes,
                   "date_field": args.date_field, "date": args.date,
                   "labels_crs": args.labels_crs, "buffer_m": args.buffer_m,
                   "level": args.level}
        given = {k: v for k, v in options.items() if v is not None}
        try:
            spec = ValidationSpec.model_validate(given)
        except ValidationError as exc:
            flags = {"layer": "labels-layer"}
            problems = []
            for error in exc.errors():
                key = str(error["loc"][0]) if error["loc"] else ""
                text = describe_error(error, given, ValidationSpec)
                flag = "--" + flags.get(key, key.replace("_", "-"))
                problems.append(flag + text[len(key):] if text.startswith(key) else text)
            raise SpecError(join_problems("arguments", problems)) from None
        done = validate(args.results, spec, out_dir=args.out)
        print_validation(done.report)
        if done.districts is not None:
            from rich.console import Console

            from ruinmap.cluster.outputs import format_district_table

            Console().print(format_district_table(done.districts))
        print("wrote " + ", ".join(str(p) for p in done.files.values()))
        return 0

    return run


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {
    "validate": _add_validate,
}
