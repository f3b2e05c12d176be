"""The kernel warm-up loads every numba kernel specialisation a real tile then uses."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.plan import pixel_sides_m, plan_job
from ruinmap.cluster.job.polygons import polygons_on_grid, read_polygons, tile_vectors
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.synthetic import City
from tests.support.jobs import SHARD

# In a fresh interpreter (no kernel loaded yet): the warm-up, then one real tile; prints the
# kernel specialisations the tile loaded that the warm-up had not.
_SCRIPT = textwrap.dedent("""
    import importlib, json, pickle, pkgutil, sys
    import numba.core.dispatcher
    import ruinmap.kernels
    from ruinmap.cluster.job.task import run_tile
    from ruinmap.cluster.job.warmup import warm_tile_kernels

    def loaded():
        found = set()
        for info in pkgutil.iter_modules(ruinmap.kernels.__path__):
            module = importlib.import_module(f"ruinmap.kernels.{info.name}")
            for name, value in vars(module).items():
                if isinstance(value, numba.core.dispatcher.Dispatcher):
                    found |= {f"{info.name}.{name}{sig}" for sig in value.signatures}
        return found

    plan, tile, vectors, warm_args = pickle.loads(open(sys.argv[1], "rb").read())
    warm_tile_kernels(*warm_args, masked=False)
    warmed = loaded()
    run_tile(plan, tile, vectors)
    print(json.dumps({"warmed": len(warmed), "missed": sorted(loaded() - warmed)}))
""")


def test_a_tile_after_the_warmup_loads_no_kernel_of_its_own(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    spec = job_spec_for(job_city, tmp_path / "out")
    result = run_job(spec, client=dask_client, progress=False,
                     ingest_options=IngestOptions(chunk=64, shard=SHARD))
    files = validate_spec_files(spec)
    store = StoreInfo.read(result.store)
    polygons = polygons_on_grid(spec, read_polygons(spec, files), store.grid)
    plan = plan_job(spec, files, store, n_districts=len(polygons.district_ids))
    tile = plan.tiles[0]
    [vectors] = tile_vectors([tile], plan.grid, polygons, plan.mask_margin)
    warm_args = (spec.method_params, store.bands, store.n_times["pre"], store.n_times["post"],
                 pixel_sides_m(store.grid))
    args = tmp_path / "args.pickle"
    args.write_bytes(pickle.dumps((plan, tile, vectors, warm_args)))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(args)], capture_output=True,
                          text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["warmed"] > 5
    assert report["missed"] == []
