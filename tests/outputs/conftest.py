"""A real job whose products the output tests read back: the synthetic city of the job tests
(320 px), its districts keyed by an OCHA-style P-code field (`ADM2_PCODE`, strings with
leading zeros), with an H3 grid at resolution 9."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.synthetic import City, make_city
from tests.support.jobs import CITY_SIZE, SHARD, make_job_spec

H3_RESOLUTION = 9


@dataclass(frozen=True)
class ProductsRun:
    city: City
    out: Path
    result: JobResult
    pcodes: dict[str, str]  # district_id of the synthetic city -> its P-code


@pytest.fixture(scope="session")
def products_run(tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> ProductsRun:
    city = make_city(tmp_path_factory.mktemp("products") / "city", size=CITY_SIZE, seed=3)
    districts = gpd.read_file(city.out_dir / "districts.geojson")
    pcodes = {d: f"SY0{i + 1:03d}" for i, d in enumerate(districts["district_id"])}
    districts["ADM2_PCODE"] = districts["district_id"].map(pcodes)
    keyed = city.out_dir / "districts_pcode.gpkg"
    districts.drop(columns="district_id").to_file(keyed, driver="GPKG")
    out = city.out_dir.parent / "out"
    spec = make_job_spec(city, out, districts={"path": str(keyed), "id": "ADM2_PCODE",
                                               "name": "name"},
                         grid={"cell_size": 100, "h3_resolution": H3_RESOLUTION})
    result = run_job(spec, client=dask_client, progress=False,
                     ingest_options=IngestOptions(chunk=64, shard=SHARD))
    return ProductsRun(city, out, result, pcodes)
