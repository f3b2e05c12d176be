"""Sub-commands of the job service and its client: serve, submit, jobs, status, results, cancel."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

Runner = Callable[[argparse.Namespace], int]

_URL_ENV = "RUINMAP_URL"
_TOKEN_ENV = "RUINMAP_TOKEN"


def _add_client_options(p: argparse.ArgumentParser, *, token: bool = True) -> None:
    p.add_argument("--url", default=os.environ.get(_URL_ENV, "http://127.0.0.1:8080"),
                   help=f"the job service (default ${_URL_ENV} or http://127.0.0.1:8080)")
    if token:
        p.add_argument("--token", default=None,
                       help=f"bearer token (default ${_TOKEN_ENV})")
    p.add_argument("--json", action="store_true", help="print the service's JSON")


def _client(args: argparse.Namespace) -> Any:
    from ruinmap.cluster.service.client import ServiceClient

    token = getattr(args, "token", None) or os.environ.get(_TOKEN_ENV) or None
    return ServiceClient(args.url, token)


def _print_status(info: dict[str, Any]) -> None:
    print(f"{info['jobID']}  {info['status']:<10} {info.get('progress', 0):>3} %  "
          f"{info.get('message', '')}")


def _add_serve(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "serve",
        help="run the job service (OGC API - Processes) in front of a Dask cluster",
        description=(
            "Serve OGC API - Processes with the damage-map process, its job list, results and "
            "a results page at /ui/. Settings: --config service.toml, RUINMAP_SERVICE_* "
            "variables, then these flags."
        ),
    )
    p.add_argument("--config", help="service.toml (default: built-in defaults)")
    p.add_argument("--host", help="address to listen on (default [server] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default [server] port, 8080)")
    p.add_argument("--scheduler", help="'local' or tcp://host:port (default [cluster] address)")
    p.add_argument("--hash-token", metavar="TOKEN",
                   help="print the sha256: form of TOKEN for [auth] tokens and exit")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cluster.service.config import hash_token, load_config

        if args.hash_token:
            print(hash_token(args.hash_token))
            return 0
        import logging

        import uvicorn

        from ruinmap.cluster.service.app import create_app

        config = load_config(args.config).with_overrides(
            host=args.host, port=args.port, cluster_address=args.scheduler)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if not config.token_hashes:
            print("warning: no [auth] tokens configured: nobody can submit or dismiss jobs",
                  file=sys.stderr)
        app = create_app(config)
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                    timeout_graceful_shutdown=10)
        return 0

    return run


def _add_submit(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser("submit", help="submit a job file to the job service",
                       description="Send JOB (the job.toml of `ruinmap run`) to the service as "
                       "a damage-map execution; relative paths are relative to the service's "
                       "data root, output.dir to its output root.")
    p.add_argument("job", help="job file (.toml or .json)")
    p.add_argument("--wait", action="store_true", help="wait for the job, with a progress bar")
    _add_client_options(p)

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cluster.service.client import read_job_file

        spec = read_job_file(args.job)
        with _client(args) as client:
            info = client.submit(spec)
            if not args.wait:
                print(json.dumps(info, indent=2) if args.json else info["jobID"])
                return 0
            print(f"job {info['jobID']} accepted", file=sys.stderr)
            final = _wait_with_bar(client, info["jobID"])
        if args.json:
            print(json.dumps(final, indent=2))
        else:
            _print_status(final)
        return 0 if final["status"] == "successful" else 1

    return run


def _wait_with_bar(client: Any, job_id: str) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f} %"), TimeElapsedColumn(),
               TextColumn("{task.fields[message]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(job_id[:12], total=100, message="")

        def update(info: dict[str, Any]) -> None:
            bar.update(task, completed=info.get("progress", 0),
                       message=f"{info['status']}: {info.get('message', '')}")

        return dict(client.wait(job_id, on_status=update))


def _add_jobs(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser("jobs", help="list the job service's jobs, newest first")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _add_client_options(p)

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            jobs = client.jobs(args.limit)
        if args.json:
            print(json.dumps(jobs, indent=2))
        for info in [] if args.json else jobs:
            _print_status(info)
        return 0

    return run


def _job_command(
    sub: argparse._SubParsersAction, name: str, help_text: str, call: str
) -> Runner:
    """A command taking a job id that calls `client.<call>(id)` and prints the job's status."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("id", help="job id")
    _add_client_options(p)

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            info = getattr(client, call)(args.id)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_status(info)
        return 0

    return run


def _add_status(sub: argparse._SubParsersAction) -> Runner:
    return _job_command(sub, "status", "show one job's status", "status")


def _add_results(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser("results", help="download every output of a finished job")
    p.add_argument("id", help="job id")
    p.add_argument("--out", required=True, help="folder to write the files into")
    _add_client_options(p)

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            paths = client.download(args.id, args.out)
        for path in paths:
            print(path)
        return 0

    return run


def _add_cancel(sub: argparse._SubParsersAction) -> Runner:
    return _job_command(
        sub, "cancel", "dismiss a job: stop its work and remove its outputs", "cancel"
    )


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {
    "serve": _add_serve,
    "submit": _add_submit,
    "jobs": _add_jobs,
    "status": _add_status,
    "results": _add_results,
    "cancel": _add_cancel,
}
