"""Everything that touches Dask, Zarr, files and jobs, in wings: storage, geo, compute, methods,
ingest, job, outputs, service (see ARCHITECTURE.md)."""
