"""The job service: OGC API - Processes - Part 1: Core in front of a Dask cluster.

`config` (service.toml and RUINMAP_SERVICE_* variables), `jobstore` (SQLite), `paths` (data
and output roots), `submission` (execute requests into job specs), `runner` (jobs on one Dask
client), `app` (the FastAPI app), `page` (the results page) and `client` (what the CLI uses).
"""
