"""Writers of the formats a damage-mapping job leaves for its users; they know nothing about
jobs (`job.products` decides which files a job writes). Each file is written whole or not at
all (`storage.durable`).

- `cog`: Cloud-Optimized GeoTIFFs of large rasters, written window by window from Zarr, and
  small multi-band ones; `styles`: class names and a QGIS style beside a class raster;
- `tables`: districts.parquet / .geojson / .csv / .gpkg, buildings.parquet / .gpkg, the
  terminal summary; `hxl`: districts_hxl.csv; `h3grid`: the damage grid on H3 cells;
- `stac`: the STAC catalog of a product set, and its offline validation;
- `preview` and `mapping`: a raster's preview and map.png (classes, districts, legend, scale
  bar);
- `map_layers`: map.png's building outlines and overview inset; `captions`: the imagery
  dates and the source credit line of the figures; `charts`: districts.png and
  score_hist.png;
- `report`: job.json (spec, parameters, inputs with checksums, versions, timings, outputs);
- `palette`: class names and colours shared by the raster, its style and the map.
"""

from __future__ import annotations

from ruinmap.cluster.outputs.captions import default_credit, imagery_dates, imagery_dates_text
from ruinmap.cluster.outputs.charts import (
    render_district_chart,
    render_score_histogram,
    score_histogram,
)
from ruinmap.cluster.outputs.cog import (
    cog_problems,
    write_bands_cog,
    write_cog,
    write_layers_cog,
)
from ruinmap.cluster.outputs.mapping import render_map
from ruinmap.cluster.outputs.palette import class_categories, class_colormap
from ruinmap.cluster.outputs.preview import downsample_for_preview, preview_transform
from ruinmap.cluster.outputs.report import (
    input_record,
    software_versions,
    to_jsonable,
    write_job_report,
)
from ruinmap.cluster.outputs.styles import write_class_sidecars
from ruinmap.cluster.outputs.tables import (
    format_district_table,
    write_building_geopackage,
    write_building_table,
    write_district_tables,
)

__all__ = [
    "class_categories",
    "class_colormap",
    "cog_problems",
    "default_credit",
    "downsample_for_preview",
    "format_district_table",
    "imagery_dates",
    "imagery_dates_text",
    "input_record",
    "preview_transform",
    "render_district_chart",
    "render_map",
    "render_score_histogram",
    "score_histogram",
    "software_versions",
    "to_jsonable",
    "write_bands_cog",
    "write_building_geopackage",
    "write_building_table",
    "write_class_sidecars",
    "write_cog",
    "write_district_tables",
    "write_job_report",
    "write_layers_cog",
]
