"""The reads deep inside a job are confined too when `run_job` confines its inputs: the orbit
tags pwtt reads from a raster, the checksums of the polygon files for job.json and the labels
of `[validation]` (UNOSAT GeoPackage, xBD JSON, a File Geodatabase folder). Each is held to
`confinement(roots)` on real files, with real symlinks to an outside copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ruinmap.cluster.methods.pwtt import PwttParams, date_orbits
from ruinmap.cluster.outputs.report import input_record
from ruinmap.cluster.storage.confined import check_folder_inside, confinement
from ruinmap.cluster.validation.labels import read_labels
from ruinmap.errors import ConfinementError
from tests.support.rasters import write_geotiff


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inside, outside = tmp_path / "root", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    return inside, outside


def _raster_with_orbit(path: Path, _: Path) -> None:
    write_geotiff(path, np.ones((16, 16), np.float32), tags={"RELATIVE_ORBIT": "87"})


def _orbit_tags(path: Path) -> Any:
    attrs = {"sources": [{"side": "pre", "time_index": 0, "path": str(path)}]}
    return date_orbits(attrs, "pre", 1, PwttParams())


def _copy_of(source: Path) -> Callable[[Path, Path], None]:
    def copy(path: Path, shared_data: Path) -> None:
        found = sorted(shared_data.glob(str(source)))
        if not found:
            pytest.skip(f"the shared labels {source} are absent")
        shutil.copy(found[0], path)
    return copy


#: what -> (file name, how to make it, the read under test)
READS: dict[str, tuple[str, Callable[[Path, Path], None], Callable[[Path], Any]]] = {
    "pwtt orbit tags": ("image.tif", _raster_with_orbit, _orbit_tags),
    "job.json checksum": ("districts.gpkg", lambda path, _: path.write_bytes(b"districts"),
                          lambda path: input_record(path)["sha256"]),
    "UNOSAT labels": ("daraa.gpkg", _copy_of(Path("unosat-daraa/daraa_damage.gpkg")),
                      lambda path: len(read_labels(path, labels_crs="EPSG:32637").frame)),
    "xBD labels": ("joplin_post_disaster.json",
                   _copy_of(Path("xbd-joplin-00000000/labels/*post_disaster.json")),
                   lambda path: len(read_labels(path).frame)),
}


@pytest.mark.parametrize("what", READS)
def test_a_deep_read_of_a_link_to_outside_is_refused_when_confined(
        roots: tuple[Path, Path], shared_data: Path, what: str) -> None:
    inside, outside = roots
    name, make, read = READS[what]
    make(inside / name, shared_data)
    make(outside / name, shared_data)
    expected = read(inside / name)
    with confinement((str(inside),)):
        assert read(inside / name) == expected  # a real file inside: read as unconfined
    (inside / f"link-{name}").symlink_to(outside / name)
    with confinement((str(inside),)), pytest.raises(ConfinementError, match="outside"):
        read(inside / f"link-{name}")
    assert read(inside / f"link-{name}") == expected  # the command line: read by name


def test_a_folder_dataset_with_an_entry_linking_outside_is_refused(
        roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    gdb = inside / "damage.gdb"
    gdb.mkdir()
    (gdb / "a00000001.gdbtable").write_bytes(b"table")
    check_folder_inside(gdb, (str(inside),))
    (outside / "secret.gdbtable").write_bytes(b"secret")
    (gdb / "a00000009.gdbtable").symlink_to(outside / "secret.gdbtable")
    with pytest.raises(ConfinementError, match=r"a00000009\.gdbtable: resolves to"):
        check_folder_inside(gdb, (str(inside),))
    check_folder_inside(gdb, None)  # unconfined: nothing to check
