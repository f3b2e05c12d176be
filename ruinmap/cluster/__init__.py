"""Everything that touches Dask, Zarr, files and jobs: ingest, the pipeline, aggregation, service."""
