"""Ingest: pre- and post-event GeoTIFFs (local or s3://) into one aligned, sharded Zarr v3 store.

`plan` (the inputs' headers: acquisitions, bands, the common grid), `layout` (the store's
layout and provenance attributes), `shards` (the worker task writing one shard), `warp`
(reading a window of the grid from a source), `run` (`ingest`, the driver), `append`
(`ingest_or_append`: a complete store grown by post-event dates given since, monitoring).
"""

from __future__ import annotations

from ruinmap.cluster.ingest.append import ingest_or_append
from ruinmap.cluster.ingest.layout import unit_key
from ruinmap.cluster.ingest.options import DEFAULT_CHUNK, DEFAULT_COMPRESSION, IngestOptions
from ruinmap.cluster.ingest.plan import InputPlan, plan_inputs
from ruinmap.cluster.ingest.run import IngestReport, ingest

__all__ = ["DEFAULT_CHUNK", "DEFAULT_COMPRESSION", "IngestOptions", "IngestReport", "InputPlan",
           "ingest", "ingest_or_append", "plan_inputs", "unit_key"]
