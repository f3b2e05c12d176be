"""Everything that touches Dask, Zarr, files and jobs: ingest, pipeline, aggregation, service."""
