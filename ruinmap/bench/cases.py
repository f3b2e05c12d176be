"""What `ruinmap bench` measures: one `Case` per table row, kernel + parameters + inputs.

A case names a public kernel in a `ruinmap.kernels` module; its NumPy reference is the same
name with `_reference` in the same module, called with the same arguments. Modules are imported
only when a case runs, so listing cases compiles and imports nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ruinmap.bench.inputs import N_DISTRICTS_SIDE, Inputs

N_DATES = 8  # welch_t: 8 pre and 8 post acquisitions, a typical multi-temporal SAR stack
N_BANDS = 4  # cva_magnitude: e.g. blue, green, red, NIR
FOCAL_RADII = (2, 5, 10, 15)
N_LABELS = N_DISTRICTS_SIDE * N_DISTRICTS_SIDE
N_BINS = 64
BLOCK_FACTOR = 10
THRESHOLDS = (0.5, 1.0, 2.0, 3.0)


@dataclass(frozen=True)
class Case:
    """One benchmark row.

    Attributes
    ----------
    kernel : public function name in `module` (the `--kernel` selector and the JSON `kernel`)
    module : the `ruinmap.kernels` module holding the kernel and its `<kernel>_reference`
    params : shown in the table and the JSON (plain values)
    inputs : builds the positional array arguments from the run's `Inputs`; images are
        (y, x), stacks (layer, y, x), strips are cut on axis -2
    kwargs : further keyword arguments of both kernel and reference
    halo : rows of context each strip needs (focal radius), cropped from the output
    quantum : strip starts are multiples of this (block_reduce factor)
    combine : name of a function in `module` merging per-strip results (reductions)
    layers : sigma0 layers per stream ("pre", "post") the inputs use
    out_dtype : the kernel takes `out=`; the timed runs write into one preallocated image of
        this dtype, as the triad does, so the bound compares like with like (a fresh 64 MB
        output costs page faults that neither the triad nor the memory bound include)
    """

    kernel: str
    module: str
    params: Mapping[str, Any]
    inputs: Callable[[Inputs], tuple[np.ndarray, ...]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    halo: int = 0
    quantum: int = 1
    combine: str | None = None
    layers: int = 1
    out_dtype: str | None = None

    @property
    def label(self) -> str:
        """`kernel` followed by its parameters, e.g. `focal_mean radius=10`."""
        shown = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kernel} {shown}".strip()

    def functions(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any] | None]:
        """(kernel, reference, combine) with the case's keyword arguments bound."""
        module = importlib.import_module(self.module)
        kernel = partial(getattr(module, self.kernel), **self.kwargs)
        reference = partial(getattr(module, f"{self.kernel}_reference"), **self.kwargs)
        combine = getattr(module, self.combine) if self.combine else None
        return kernel, reference, combine


def _pre(d: Inputs, k: int = 0) -> np.ndarray:
    return d.sigma0("pre", k + 1)[k]


def _post(d: Inputs, k: int = 0) -> np.ndarray:
    return d.sigma0("post", k + 1)[k]


def _focal(radius: int) -> Case:
    return Case(
        "focal_mean", "ruinmap.kernels.focal", {"radius": radius},
        lambda d: (_pre(d),), kwargs={"radius": radius}, halo=radius,
    )


INDICES = "ruinmap.kernels.indices"

CASES: tuple[Case, ...] = (
    Case("to_db", INDICES, {}, lambda d: (_pre(d),), out_dtype="float32"),
    Case("log_ratio", INDICES, {}, lambda d: (_pre(d), _post(d)), out_dtype="float32"),
    Case(
        "normalized_difference", INDICES, {}, lambda d: (_pre(d, 1), _pre(d, 0)), layers=2,
        out_dtype="float32",
    ),
    Case(
        "nd_change", INDICES, {},
        lambda d: (_pre(d, 1), _pre(d, 0), _post(d, 1), _post(d, 0)), layers=2,
        out_dtype="float32",
    ),
    Case(
        "welch_t", "ruinmap.kernels.ttest", {"n_pre": N_DATES, "n_post": N_DATES},
        lambda d: (d.sigma0("pre", N_DATES), d.sigma0("post", N_DATES)), layers=N_DATES,
    ),
    Case(
        "cva_magnitude", "ruinmap.kernels.cva", {"bands": N_BANDS},
        lambda d: (d.sigma0("pre", N_BANDS), d.sigma0("post", N_BANDS)), layers=N_BANDS,
        out_dtype="float32",
    ),
    Case(
        "classify", "ruinmap.kernels.classify", {"thresholds": len(THRESHOLDS)},
        lambda d: (d.score(),), kwargs={"thresholds": np.array(THRESHOLDS, np.float32)},
        out_dtype="uint8",
    ),
    *(_focal(r) for r in FOCAL_RADII),
    Case(
        "focal_median", "ruinmap.kernels.focal_median", {"radius": 1},
        lambda d: (_pre(d),), kwargs={"radius": 1}, halo=1,
    ),
    Case(
        "lee_filter", "ruinmap.kernels.lee", {"size": 3, "enl": 5.0},
        lambda d: (_pre(d),), kwargs={"size": 3, "enl": 5.0}, halo=1,
    ),
    Case(
        "label_stats", "ruinmap.kernels.zonal", {"n_labels": N_LABELS, "bins": N_BINS},
        lambda d: (d.districts(), _pre(d)),
        kwargs={"n_labels": N_LABELS, "bins": np.linspace(0.0, 0.5, N_BINS + 1)},
        combine="merge_label_stats",
    ),
    Case(
        "block_reduce", "ruinmap.kernels.grid", {"factor": BLOCK_FACTOR, "how": "mean"},
        lambda d: (_pre(d),), kwargs={"factor": BLOCK_FACTOR, "how": "mean"},
        quantum=BLOCK_FACTOR,
    ),
)

KERNEL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.kernel for c in CASES))
