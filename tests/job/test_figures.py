"""The job's figures and side-car files: written, listed among its products, titled from the
spec or the imagery."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.image import imread

from ruinmap.cluster.job.products import figure_credit, figure_title
from ruinmap.cluster.job.run import JobResult
from ruinmap.cluster.storage.store import StoreInfo


@pytest.mark.parametrize("key, name", [
    ("map_png", "map.png"), ("districts_png", "districts.png"),
    ("score_hist_png", "score_hist.png")])
def test_every_figure_is_a_product(job_run: JobResult, key: str, name: str) -> None:
    path = Path(str(job_run.files[key]))
    assert path.name == name
    assert imread(path).ndim == 3


@pytest.mark.parametrize("key, name", [
    ("damage_aux_xml", "damage.tif.aux.xml"), ("damage_qml", "damage.qml"),
    ("grid_qml", "grid.qml")])
def test_raster_side_cars_are_products(job_run: JobResult, key: str, name: str) -> None:
    path = Path(str(job_run.files[key]))
    assert path.name == name and path.is_file()


def test_default_title_names_method_and_last_date(job_run: JobResult) -> None:
    sources = StoreInfo.read(str(job_run.store)).sources
    last = max(str(s["time"])[:10] for s in sources if s["side"] == "post")
    assert figure_title(job_run.spec, sources) == f"Damage detected (pwtt) by {last}"
    assert job_run.spec.output.dir not in figure_title(job_run.spec, sources)


def test_title_and_credit_come_from_the_spec(job_run: JobResult, tmp_path: Path) -> None:
    spec = job_run.spec.model_copy(update={"output": job_run.spec.output.model_copy(
        update={"title": "Mariupol, March 2022", "credit": "Imagery: ESA"})})
    sources = StoreInfo.read(str(job_run.store)).sources
    assert figure_title(spec, sources) == "Mariupol, March 2022"
    assert figure_credit(spec, sources) == "Imagery: ESA"
    # the synthetic city's files are no Sentinel products: credited by name
    assert figure_credit(job_run.spec, sources).startswith("Imagery: S1_")
