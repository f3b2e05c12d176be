"""The scale of SAR backscatter inputs (linear power, amplitude or decibels), decided once per
source file, and the conversion to linear power the ingest applies, so that every method sees
one scale.

`inputs.scale` / `ruinmap ingest --scale` is `auto` (default), `power`, `amplitude` or `db`.
Auto decides per file:

1. from metadata (`products.recognise_product`): a HyP3 name's scale letter, the OPERA and
   Planetary Computer specifications (linear power), a `UNITS`/`SCALE` tag;
2. else from the values of a decimated read (at most 256 x 256 px, from an overview when the
   file has one; nodata and NaN left out): decibels when at least half the values are
   negative and the 1st to 99th percentiles lie within -80..+40 dB spanning at least 3 dB
   (dB stacks are mostly negative with a range of tens); linear power when no value is
   negative (amplitude cannot be told from power by its values: state `amplitude` when it is);
   anything else (mixed signs, a narrow negative range) is ambiguous and an InputError naming
   the file, for SAR files. Files that are not SAR (optical bands, no polarisation in their
   names) keep their values unless they plainly look like dB.

Conversion: power = 10^(dB / 10), power = amplitude^2. Only polarisation bands (and unnamed
bands) are converted; a GEE export's `angle` band keeps its degrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from ruinmap.cluster.storage.confined import Roots, confined_raster_path
from ruinmap.cluster.storage.location import as_location
from ruinmap.errors import InputError, SpecError

__all__ = ["SCALE_CHOICES", "ScaleDecision", "check_scale", "decide_scale", "sample_file",
           "scale_from_values", "to_power"]

SCALE_CHOICES = ("auto", "power", "amplitude", "db")
#: side of the decimated read the scale and the nodata share are judged from, pixels
SAMPLE_SIDE = 256
#: fewest valid sampled values the values rule decides from
MIN_SAMPLES = 100


@dataclass(frozen=True)
class ScaleDecision:
    """How one file's values are read: `scale` (power, amplitude, db; `as-is` for a file that
    is not SAR and keeps its values), decided `by` (`spec`, `metadata`, `values`), and the
    evidence, in words, printed and recorded in the store and job.json."""

    scale: str
    by: str
    evidence: str

    def to_attrs(self) -> dict[str, str]:
        return {"scale": self.scale, "decided_by": self.by, "evidence": self.evidence}


@dataclass(frozen=True)
class FileSample:
    """A decimated read of a file: its valid values (all bands) and its nodata share."""

    values: np.ndarray
    nodata_fraction: float


def check_scale(scale: str, what: str) -> str:
    """`scale` lower-cased, or SpecError naming `what` (the option or spec key)."""
    text = str(scale).strip().lower()
    if text in ("decibel", "decibels"):
        text = "db"
    if text not in SCALE_CHOICES:
        raise SpecError(f"{what} {scale!r}: use one of {', '.join(SCALE_CHOICES)}")
    return text


def sample_file(path: str, bands: Sequence[int], nodata: float | None,
                confine_to: Roots | None = None) -> FileSample:
    """The valid values of `bands` (1-based) of `path` from a read decimated to at most
    `SAMPLE_SIDE` px a side where the file has overviews (or is small), else from 8 x 8
    windows of `SAMPLE_SIDE` / 8 px spread over it (a decimated read of a large file without
    overviews would read all of it), with the share of pixels that are nodata (the file's
    nodata value, or NaN) in every band."""
    with confined_raster_path(as_location(path), confine_to) as name, rasterio.open(name) as src:
        if src.overviews(bands[0]) or src.width * src.height <= (8 * SAMPLE_SIDE) ** 2:
            step = max(1, int(np.ceil(max(src.width, src.height) / SAMPLE_SIDE)))
            shape = (len(bands), max(1, src.height // step), max(1, src.width // step))
            values = src.read(list(bands), out_shape=shape, out_dtype=np.float64,
                              resampling=rasterio.enums.Resampling.nearest)
        else:
            side = SAMPLE_SIDE // 8
            rows = np.linspace(0, src.height - side, 8).astype(int)
            cols = np.linspace(0, src.width - side, 8).astype(int)
            values = np.concatenate([
                src.read(list(bands), window=Window(int(c), int(r), side, side),
                         out_dtype=np.float64).reshape(len(bands), -1)
                for r in rows for c in cols], axis=1)
    valid = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= values != nodata
    empty = ~valid.any(axis=0)
    return FileSample(values[valid], float(empty.mean()) if empty.size else 1.0)


def scale_from_values(values: np.ndarray, path: str, *, is_sar: bool) -> ScaleDecision:
    """The scale the values say (module docstring), or InputError naming `path` when they do
    not say it and the file is SAR (`is_sar`); a non-SAR file that is not plainly dB is
    `as-is`."""
    n = int(values.size)
    hint = ("set inputs.scale (job spec) or --scale (ruinmap ingest) to power, amplitude or "
            "db")
    if n < MIN_SAMPLES:
        if not is_sar:
            return ScaleDecision("as-is", "values", f"not SAR; only {n} valid sampled values")
        raise InputError(f"{path}: only {n} valid pixels in a decimated read, too few to "
                         f"tell its scale (power, amplitude or dB); {hint}")
    negative = float(np.mean(values < 0))
    p1, p50, p99 = (float(v) for v in np.percentile(values, [1, 50, 99]))
    facts = (f"{n} sampled values: {negative:.0%} negative, 1st/50th/99th percentiles "
             f"{p1:.4g}/{p50:.4g}/{p99:.4g}")
    if negative >= 0.5 and p1 >= -80 and p99 <= 40 and p99 - p1 >= 3:
        return ScaleDecision("db", "values", f"{facts}: mostly negative over tens of units, dB")
    if negative == 0:
        if not is_sar:
            return ScaleDecision("as-is", "values", f"not SAR; {facts}")
        return ScaleDecision("power", "values", f"{facts}: none negative, linear; taken as "
                             "power (amplitude looks alike: set the scale if it is amplitude)")
    if not is_sar:
        return ScaleDecision("as-is", "values", f"not SAR; {facts}")
    raise InputError(f"{path}: cannot tell the scale of its values ({facts}): neither linear "
                     f"(no negative values) nor dB (mostly negative over tens of dB); {hint}")


def decide_scale(path: str, requested: str, metadata_scale: str | None, metadata_evidence: str,
                 sample: FileSample | None, *, is_sar: bool) -> ScaleDecision:
    """One file's scale: `requested` unless `auto`, else metadata, else its values."""
    if requested != "auto":
        evidence = "inputs.scale / --scale"
        if metadata_scale is not None and metadata_scale != requested:
            evidence += f" (overrides the metadata's {metadata_scale}: {metadata_evidence})"
        return ScaleDecision(requested, "spec", evidence)
    if metadata_scale is not None:
        return ScaleDecision(metadata_scale, "metadata", metadata_evidence)
    if sample is None:
        return ScaleDecision("as-is", "values", "not read")
    return scale_from_values(sample.values, path, is_sar=is_sar)


def to_power(block: np.ndarray, scale: str, converted: Sequence[bool] | None = None
             ) -> np.ndarray:
    """`block` (bands, rows, cols; float32) converted in place to linear power from `scale`
    on the bands `converted` marks (all when None): 10^(dB/10), or amplitude squared. NaN
    stays NaN; power and `as-is` are returned unchanged."""
    if scale in ("power", "as-is"):
        return block
    for band in range(block.shape[0]):
        if converted is not None and not converted[band]:
            continue
        values = block[band]
        if scale == "db":
            # in float64: a float32 power of ten would cost ~1e-6 relative on every pixel
            block[band] = np.power(10.0, values.astype(np.float64) / 10.0)
        elif scale == "amplitude":
            np.multiply(values, values, out=values)
        else:
            raise ValueError(f"unknown scale {scale!r}")
    return block
