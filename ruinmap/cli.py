"""The `ruinmap` command: argument parsing and printing only.

Each sub-command has an `_add_<name>` function that declares its arguments and a `_run_<name>`
function that calls the library function tests can call too. Library modules are imported
inside `_run_*` so `ruinmap --help` stays fast and does not compile kernels.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ruinmap import __version__
from ruinmap.errors import RuinmapError

Runner = Callable[[argparse.Namespace], int]


def _add_bench(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "bench",
        help="measure every kernel against the memory-bandwidth bound and its NumPy reference",
        description=(
            "Time every kernel on size x size float32 inputs using all cores; report megapixels/s, "
            "effective GB/s, the fraction of a triad bandwidth bound measured in the same run, "
            "and the speedup over the kernel's NumPy reference."
        ),
    )
    p.add_argument("--size", type=int, default=4096, help="image side in pixels (default 4096)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per kernel; median reported")
    p.add_argument(
        "--kernel", action="append", default=None, help="only this kernel (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print only a JSON list, one per kernel")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.bench import print_results, run_benchmarks

        results = run_benchmarks(size=args.size, repeat=args.repeat, kernels=args.kernel)
        print_results(results, as_json=args.json)
        return 0

    return run


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {
    "bench": _add_bench,
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Runner]]:
    """The top-level parser and the runner of each sub-command."""
    parser = argparse.ArgumentParser(
        prog="ruinmap",
        description="Map war and disaster damage from pre- and post-event satellite imagery.",
    )
    parser.add_argument("--version", action="version", version=f"ruinmap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {name: add(sub) for name, add in COMMANDS.items()}
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return runners[args.command](args)
    except RuinmapError as exc:
        print(f"ruinmap {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ruinmap {args.command}: interrupted", file=sys.stderr)
        return 130
