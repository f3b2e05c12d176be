"""Sub-commands about where work runs: `ruinmap cluster ...` (profiles, batch scripts).

- `ruinmap cluster config`: the ruinmap settings in effect (Dask config `ruinmap` key, defaults
  merged with ~/.config/dask/*.yaml and DASK_RUINMAP__* variables) as YAML, and the address
  work goes to when neither --scheduler nor a job file names one;
- `ruinmap cluster script --profile slurm|pbs`: the batch script dask-jobqueue would submit
  for each worker job; `--profile kubernetes`: the DaskCluster resource the kubernetes profile
  creates.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Runner = Callable[[argparse.Namespace], int]

SCRIPT_PROFILES = ("slurm", "pbs", "kubernetes")


def _add_cluster(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "cluster",
        help="show cluster settings and the batch scripts of the slurm/pbs profiles",
        description="Where work runs. Settings live in the Dask config under the 'ruinmap' key "
        "(and 'jobqueue.slurm', 'jobqueue.pbs' for batch systems).",
    )
    actions = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    actions.add_parser(
        "config", help="print the ruinmap settings in effect (YAML)",
        description="Print the Dask config 'ruinmap' key in effect: ruinmap's defaults merged "
        "with ~/.config/dask/*.yaml, $DASK_CONFIG and DASK_RUINMAP__* environment variables.",
    )
    script = actions.add_parser(
        "script", help="print the job script a batch profile submits (or the DaskCluster)",
        description="Print the batch script dask-jobqueue would submit for each worker job "
        "(slurm, pbs; from the jobqueue.<profile> section of the Dask config), or the "
        "DaskCluster resource of the kubernetes profile.",
    )
    script.add_argument("--profile", required=True, choices=SCRIPT_PROFILES)

    def run(args: argparse.Namespace) -> int:
        import yaml

        from ruinmap.cluster.settings import resolve_address, settings

        if args.cluster_command == "config":
            print(yaml.safe_dump({"ruinmap": settings()}, sort_keys=False), end="")
            print(f"# work runs on: {resolve_address()} (unless --scheduler or the job's "
                  "[cluster] address says otherwise)")
            return 0
        if args.cluster_command == "script":
            from ruinmap.cluster.compute.profiles import job_script, kubernetes_cluster_spec

            if args.profile == "kubernetes":
                print(yaml.safe_dump(kubernetes_cluster_spec(), sort_keys=False), end="")
            else:
                print(job_script(args.profile))
            return 0
        p.print_help()
        return 2

    return run


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {"cluster": _add_cluster}
