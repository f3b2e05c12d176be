"""RTC products shaped like the real ones, written from a synthetic city's linear-power images.

Names, layers, nodata values and tags follow the products' specifications (see
`ruinmap.cluster.ingest.products` for the citations):

- `hyp3`: ASF HyP3 RTC, one GeoTIFF per polarisation
  `S1A_IW_<date>T035200_DVP_RTC10_G_g<scale>uned_<id>_<pol>.tif` (scale p, a or d), nodata 0
  (NaN in dB), and the layover/shadow map `<base>_ls_map.tif` (uint8 flags, 1 = tested, not
  affected; 5 = layover; 17 = shadow) with the other layers a HyP3 folder holds
  (`_area.tif`, `_rgb.tif`);
- `opera`: OPERA RTC-S1, `OPERA_L2_RTC-S1_T087-184321-IW2_<date>T035200Z_20240101T000000Z_S1A_
  30_v1.0_<pol>.tif`, float32 gamma0 power, nodata NaN, tags `TRACK_NUMBER`,
  `ORBIT_PASS_DIRECTION`, `<base>_mask.tif` (0 valid, 1 shadow, 2 layover, 3 both, 255
  invalid);
- `pc`: Planetary Computer sentinel-1-rtc, `<product>_rtc/measurement/iw-<pol>.rtc.tiff`,
  float32 power, nodata -32768;
- `gee`: a Google Earth Engine `COPERNICUS/S1_GRD` export: one file a date, bands VV, VH,
  angle, in dB, no tags.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import rasterio

from ruinmap.synthetic import City

__all__ = ["PRODUCTS", "write_products"]

Mask = Callable[[tuple[int, int]], np.ndarray] | None


def _read(path: Path) -> tuple[np.ndarray, dict[str, object], tuple[str, ...]]:
    with rasterio.open(path) as src:
        profile = {"driver": "GTiff", "crs": src.crs, "transform": src.transform,
                   "width": src.width, "height": src.height}
        return src.read().astype(np.float64), profile, tuple(d or "" for d in src.descriptions)


def _write(path: Path, array: np.ndarray, profile: dict[str, object], dtype: str,
           nodata: float | None, names: tuple[str, ...] = (),
           tags: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile, count=array.shape[0], dtype=dtype,
                       nodata=nodata) as dst:
        dst.write(array.astype(dtype))
        for band, name in enumerate(names, start=1):
            dst.set_band_description(band, name)
        if tags:
            dst.update_tags(**tags)


def _scaled(power: np.ndarray, scale: str, nodata: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {"p": power, "a": np.sqrt(power), "d": 10 * np.log10(power)}[scale]
    return np.where(np.isfinite(power), values, nodata)


def _hyp3(src: Path, out: Path, day: date, index: int, scale: str, mask: Mask) -> None:
    power, profile, pols = _read(src)
    base = f"S1A_IW_{day:%Y%m%d}T035200_DVP_RTC10_G_g{scale}uned_{index:04X}"
    nodata = float("nan") if scale == "d" else 0.0
    for band, pol in enumerate(pols):
        _write(out / f"{base}_{pol}.tif", _scaled(power[band:band + 1], scale, nodata), profile,
               "float32", nodata)
    shape = (power.shape[1], power.shape[2])
    flags = np.ones(shape, np.uint8) if mask is None else mask(shape)
    _write(out / f"{base}_ls_map.tif", flags[None], profile, "uint8", None)
    _write(out / f"{base}_area.tif", np.full((1, *shape), 100.0), profile, "float32", 0.0)
    _write(out / f"{base}_rgb.tif", np.zeros((3, *shape)), profile, "uint8", None)


def _opera(src: Path, out: Path, day: date, index: int, scale: str, mask: Mask) -> None:
    power, profile, pols = _read(src)
    base = (f"OPERA_L2_RTC-S1_T087-184321-IW2_{day:%Y%m%d}T035200Z_20240101T000000Z_S1A_30_"
            "v1.0")
    tags = {"TRACK_NUMBER": "87", "ORBIT_PASS_DIRECTION": "Descending",
            "PRODUCT_TYPE": "RTC-S1"}
    for band, pol in enumerate(pols):
        _write(out / f"{base}_{pol}.tif", power[band:band + 1], profile, "float32",
               float("nan"), tags=tags)
    shape = (power.shape[1], power.shape[2])
    classes = np.zeros(shape, np.uint8) if mask is None else mask(shape)
    _write(out / f"{base}_mask.tif", classes[None], profile, "uint8", None)


def _pc(src: Path, out: Path, day: date, index: int, scale: str, mask: Mask) -> None:
    power, profile, pols = _read(src)
    folder = out / f"S1A_IW_GRDH_1SDV_{day:%Y%m%d}T035200_{day:%Y%m%d}T035225_0{index:04d}_rtc"
    for band, pol in enumerate(pols):
        _write(folder / "measurement" / f"iw-{pol.lower()}.rtc.tiff",
               _scaled(power[band:band + 1], "p", -32768.0), profile, "float32", -32768.0)


def _gee(src: Path, out: Path, day: date, index: int, scale: str, mask: Mask) -> None:
    power, profile, pols = _read(src)
    angle = np.full((1, power.shape[1], power.shape[2]), 38.5)
    stack = np.concatenate([_scaled(power, "d", float("nan")), angle])
    _write(out / f"S1_GRD_{day:%Y-%m-%d}.tif", stack, profile, "float32", float("nan"),
           names=(*pols, "angle"))


PRODUCTS = {"hyp3": _hyp3, "opera": _opera, "pc": _pc, "gee": _gee}


def write_products(city: City, out: Path, kind: str, scale: str = "p",
                   mask: Mask = None) -> tuple[str, str]:
    """Write `kind` products of every city image into `out/pre` and `out/post`; the pre and
    post globs (every file of each folder, as a user would give them)."""
    writer = PRODUCTS[kind]
    for side, files, dates in (("pre", city.pre_files, city.pre_dates),
                               ("post", city.post_files, city.post_dates)):
        for i, (path, day) in enumerate(zip(files, dates, strict=True)):
            writer(path, out / side, day, i + (100 if side == "post" else 0), scale, mask)
    pattern = "*/measurement/*.tiff" if kind == "pc" else "*.tif"
    return str(out / "pre" / pattern), str(out / "post" / pattern)
