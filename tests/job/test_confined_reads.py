"""The job's own reads are confined when `IngestOptions.confine_to` is given: the vector files
where `run_job` opens them (a districts file swapped for an outside link between the check
and the read is refused), and the rasters in real Dask worker processes, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.job.polygons import read_polygons
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.errors import ConfinementError, SpecError
from ruinmap.synthetic import City, make_city
from tests.support.jobs import make_job_spec


@pytest.fixture(scope="module")
def small_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("confined") / "root" / "city", size=64, seed=4,
                     n_pre=3, n_post=2, n_districts=3)


def _root(city: City) -> tuple[str, ...]:
    return (str(city.out_dir.parent.resolve()),)


def _linked_outside(city: City, original: Path, tmp_path: Path) -> Path:
    """A link in the city's root named like `original`, to a copy of it outside the root."""
    outside = tmp_path / f"outside{original.suffix}"
    outside.write_bytes(original.read_bytes())
    link = city.out_dir.parent / f"linked-{tmp_path.name}{original.suffix}"
    link.symlink_to(outside)
    return link


@pytest.mark.parametrize("table", ["districts", "buildings"])
def test_a_vector_file_linked_outside_is_refused_by_the_job_itself(
        small_city: City, tmp_path: Path, table: str) -> None:
    original = small_city.districts_path if table == "districts" else small_city.buildings_path
    link = _linked_outside(small_city, original, tmp_path)
    spec = make_job_spec(small_city, tmp_path / "out")
    spec = spec.model_copy(update={table: getattr(spec, table).model_copy(
        update={"path": str(link)})})
    validate_spec_files(spec)  # the command line reads any file the user names
    with pytest.raises(SpecError) as caught:
        run_job(spec, progress=False,
                ingest_options=IngestOptions(confine_to=_root(small_city)))
    message = str(caught.value)
    assert f"{table}.path" in message and str(link) in message
    assert "outside the data roots" in message and _root(small_city)[0] in message


def test_a_districts_file_swapped_between_the_check_and_the_read_is_refused(
        small_city: City, tmp_path: Path) -> None:
    inside = small_city.out_dir.parent / "swap-districts.geojson"
    inside.write_bytes(small_city.districts_path.read_bytes())
    spec = make_job_spec(small_city, tmp_path / "out")
    spec = spec.model_copy(update={"districts": spec.districts.model_copy(
        update={"path": str(inside)})})
    files = validate_spec_files(spec, _root(small_city))  # checked: inside the root
    outside = tmp_path / "outside.geojson"
    outside.write_bytes(inside.read_bytes())
    inside.unlink()
    inside.symlink_to(outside)
    with pytest.raises(ConfinementError, match="outside the data roots") as caught:
        read_polygons(spec, files, _root(small_city))
    assert str(inside) in str(caught.value)
    read_polygons(spec, files)  # unconfined (the command line) it would have read it


def test_a_confined_ingest_on_worker_processes_writes_the_same_store(
        small_city: City, dask_client: Client, tmp_path: Path) -> None:
    pre = [str(p) for p in small_city.pre_files]
    post = [str(p) for p in small_city.post_files]
    ingest(pre, post, tmp_path / "plain.zarr", IngestOptions(chunk=32, shard=32),
           client=dask_client, progress=False)
    ingest(pre, post, tmp_path / "confined.zarr",
           IngestOptions(chunk=32, shard=32, confine_to=_root(small_city)),
           client=dask_client, progress=False)
    for side in ("pre", "post"):
        plain = zarr.open_array(tmp_path / "plain.zarr" / side, mode="r")[...]
        confined = zarr.open_array(tmp_path / "confined.zarr" / side, mode="r")[...]
        assert np.isfinite(confined).any()
        np.testing.assert_array_equal(confined, plain)


def test_a_confined_ingest_refuses_a_raster_outside_the_roots(
        small_city: City, dask_client: Client, tmp_path: Path) -> None:
    link = _linked_outside(small_city, small_city.post_files[0], tmp_path)
    post = [str(link)] + [str(p) for p in small_city.post_files[1:]]
    with pytest.raises(ConfinementError, match="outside the data roots") as caught:
        ingest([str(p) for p in small_city.pre_files], post, tmp_path / "store.zarr",
               IngestOptions(chunk=32, shard=32, confine_to=_root(small_city)),
               client=dask_client, progress=False)
    assert str(link) in str(caught.value)
