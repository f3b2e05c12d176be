"""The files a damage-mapping job leaves for its users, each written whole or not at all.

- `atomic`: temporary name in the same folder, fsync, rename (every writer below uses it);
- `cog`: Cloud-Optimized GeoTIFFs of the score and the damage classes (with colour table,
  class names and a QGIS style), written window by window from Zarr;
- `tables`: districts.parquet / .geojson / .csv, buildings.parquet, the terminal summary;
- `mapping`: map.png (classes, districts, legend, scale bar) and the raster preview;
- `report`: job.json (spec, parameters, inputs with checksums, versions, timings, outputs);
- `palette`: class names and colours shared by the raster, its style and the map.
"""

from __future__ import annotations

from ruinmap.cluster.outputs.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from ruinmap.cluster.outputs.cog import cog_problems, write_class_sidecars, write_cog
from ruinmap.cluster.outputs.mapping import downsample_for_preview, preview_transform, render_map
from ruinmap.cluster.outputs.palette import class_categories, class_colormap
from ruinmap.cluster.outputs.report import (
    input_record,
    software_versions,
    to_jsonable,
    write_job_report,
)
from ruinmap.cluster.outputs.tables import (
    format_district_table,
    write_building_table,
    write_district_tables,
)

__all__ = [
    "atomic_path",
    "class_categories",
    "class_colormap",
    "cog_problems",
    "downsample_for_preview",
    "format_district_table",
    "input_record",
    "preview_transform",
    "render_map",
    "software_versions",
    "to_jsonable",
    "write_building_table",
    "write_bytes_atomic",
    "write_class_sidecars",
    "write_cog",
    "write_district_tables",
    "write_job_report",
    "write_text_atomic",
]
