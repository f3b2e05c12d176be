"""Radiometric-terrain-corrected (RTC) Sentinel-1 products recognised by their names and tags.

`recognise_product` says what a GeoTIFF is, from its name, its tags and its band names alone:

- **ASF HyP3 RTC** (HyP3 RTC product guide, hyp3-docs.asf.alaska.edu/guides/rtc_product_guide,
  "Naming Convention"): one GeoTIFF per polarisation, `S1x_yy_aaaaaaaaTbbbbbb_ppo_RTCzz_u_
  defklm_ssss_VV.tif`, e.g. `S1A_IW_20180128T161201_DVP_RTC30_G_gpuned_FD6A_VV.tif`. `d` is
  gamma0 (g) or sigma0 (s), `e` the scale: power (p), amplitude (a) or decibels (d). The
  layover/shadow map `<base>_ls_map.tif` is a sum of flags (hyp3-metadata-templates
  `rtc/ls_map.xml.j2`): 1 tested, 2 look angle < slope, 4 layover, 8 look angle < opposite
  slope, 16 shadow; pixels with the layover (4) or shadow (16) flag are masked. Older names
  (`..._RTG_p_...`) give the scale as a lone letter after the `RT*` token.
- **OPERA RTC-S1** (JPL D-108758, OPERA RTC-S1 product specification; the Earth Engine
  catalog's `OPERA/RTC/L2_V1/S1` mirrors its layers): one product per burst,
  `OPERA_L2_RTC-S1_T<track>-<burst>-<swath>_<acquired>Z_<processed>Z_<sensor>_30_v1.0_VV.tif`,
  gamma0 in linear power, nodata NaN; `<base>_mask.tif`: 0 valid, 1 shadow, 2 layover,
  3 both, 255 invalid sample. The track is the relative orbit; the tag
  `ORBIT_PASS_DIRECTION` the pass.
- **Microsoft Planetary Computer `sentinel-1-rtc`** COGs (asset keys `vv`, `vh`; files
  `measurement/iw-vv.rtc.tiff`): float32 gamma0 in linear power, nodata -32768. Found by that
  name, or by float32 with nodata -32768.
- **Google Earth Engine `COPERNICUS/S1_GRD` exports**: one multi-band GeoTIFF with bands
  named VV, VH (and `angle`), in dB (no tag says so: the scale comes from the values).
- anything else is a plain GeoTIFF; its tags may still state the scale (`UNITS`, `SCALE`...).

Per-polarisation files of one product share a `group` key, so the ingest makes them one date
with bands VV, VH (`sources.build_acquisitions`). Sentinel-1 GRD in SAFE form is refused
(`refuse_safe`): ruinmap does no calibration or terrain correction.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ruinmap.errors import InputError

__all__ = ["POLARISATIONS", "MaskLayer", "Product", "is_ancillary_layer", "mask_pixels",
           "polarisation_order",
           "recognise_product", "refuse_safe"]

#: Sentinel-1 polarisations, in the order the bands of a grouped acquisition take
POLARISATIONS = ("VV", "VH", "HH", "HV")
#: Planetary Computer's sentinel-1-rtc nodata value
PC_NODATA = -32768.0
#: HyP3 ls_map flags that make a pixel unusable: layover (4), shadow (16)
HYP3_MASKED_FLAGS = 4 | 16
#: OPERA RTC-S1 mask values that make a pixel unusable: shadow, layover, both, invalid
OPERA_MASKED_VALUES = (1, 2, 3, 255)

_POL = r"(?P<pol>VV|VH|HH|HV)"
_HYP3 = re.compile(
    r"^(?P<base>S1[ABCD]_(?:IW|EW|SM|S\d)_(?P<date>\d{8}T\d{6})_[DS][VH][PRO]_RTC\d+_[A-Z]_"
    r"(?P<rad>[gs])(?P<scale>[pad])[uw][nf][ec][dm]_[0-9A-F]{4})_" + _POL + r"\.tiff?$",
    re.IGNORECASE)
_HYP3_OLD = re.compile(
    r"^(?P<base>S1[ABCD]_\w*?\d{8}T\d{6}\w*?_RT[A-Z0-9]*_(?P<scale>[pad])_\w+?)_"
    + _POL + r"\.tiff?$", re.IGNORECASE)
_OPERA = re.compile(
    r"^(?P<base>OPERA_L2_RTC-S1_T(?P<track>\d{3})-\d{6}-(?:IW|EW)\d_(?P<date>\d{8}T\d{6})Z_"
    r"\d{8}T\d{6}Z_S1[ABCD]_\d+_v[\d.]+)_" + _POL + r"\.tiff?$", re.IGNORECASE)
_PC = re.compile(r"^(?P<base>.*?)(?:^|[-_])" + _POL + r"\.rtc\.tiff?$", re.IGNORECASE)
# the layers of a product beside its backscatter: HyP3's layover/shadow map, scattering area,
# RGB decomposition, DEM, incidence angle maps; OPERA's mask
_ANCILLARY = re.compile(
    r"^(S1[ABCD]_\w*?\d{8}T\d{6}\w*?_RT\w+?_(ls_map|area|rgb|dem|inc_map|lv_theta|lv_phi)"
    r"|OPERA_L2_RTC-S1_[\w.-]+?_(mask|incidence_angle|local_incidence_angle|number_of_looks"
    r"|rtc_anf_\w+))\.tiff?$", re.IGNORECASE)
_SAFE = re.compile(r"(\.SAFE/?$|(^|/)manifest\.safe$|^S1[ABCD]_\w+_(GRD|SLC)\w*\.zip$)",
                   re.IGNORECASE)
_SCALE_LETTERS = {"p": "power", "a": "amplitude", "d": "db"}
_SCALE_WORDS = (("decibel", "db"), ("db", "db"), ("amplitude", "amplitude"),
                ("power", "power"), ("linear", "power"), ("intensity", "power"))
_SCALE_TAGS = ("SCALE", "UNITS", "UNIT", "BACKSCATTER_SCALE", "OUTPUT_SCALE", "RUINMAP_SCALE")
_PASS_TAGS = ("ORBIT_PASS_DIRECTION", "ORBITPROPERTIES_PASS", "PASS_DIRECTION",
              "ORBIT_DIRECTION", "FLIGHT_DIRECTION")
_TRACK_TAGS = ("TRACK_NUMBER", "RELATIVE_ORBIT", "RELATIVEORBITNUMBER_START")
_POL_TAGS = ("POLARIZATION", "POLARISATION", "POLARIZATIONS", "POLARISATIONS")


@dataclass(frozen=True)
class MaskLayer:
    """A product's layover/shadow mask file and how to read it (`kind`: `hyp3-ls-map`, flags;
    `opera-mask`, classes)."""

    path: str
    kind: str


@dataclass(frozen=True)
class Product:
    """What a source file is, as its name and tags say (see the module docstring).

    `scale`: power, amplitude or db when the name or tags state it, else None (decided from
    the values, `scale.decide_scale`); `scale_evidence` says where it came from. `group`:
    the key shared by the per-polarisation files of one acquisition (None: the file is an
    acquisition alone); `polarisation`: the file's one polarisation in such a group.
    """

    kind: str
    polarisation: str | None = None
    group: str | None = None
    scale: str | None = None
    scale_evidence: str = ""
    radiometry: str | None = None
    mask: MaskLayer | None = None
    orbit: int | None = None
    pass_direction: str | None = None

    @property
    def is_sar(self) -> bool:
        return self.kind != "geotiff"


def refuse_safe(path: str) -> None:
    """InputError for Sentinel-1 GRD/SLC in SAFE form (a `.SAFE` folder, its `manifest.safe`,
    or the zipped product): ruinmap reads RTC products, it does no calibration or terrain
    correction."""
    if _SAFE.search(str(path)):
        raise InputError(
            f"{path}: Sentinel-1 in SAFE form (GRD/SLC) is not radiometrically terrain "
            "corrected and ruinmap does not calibrate or terrain-correct it; make RTC "
            "GeoTIFFs first: ASF HyP3 RTC (hyp3-docs.asf.alaska.edu, on demand), OPERA RTC-S1 "
            "(ASF DAAC, per burst), Planetary Computer's sentinel-1-rtc, or locally with "
            "sarsen (`sarsen gtc/rtc`, github.com/bopen/sarsen) and a DEM"
        )


def is_ancillary_layer(path: str) -> bool:
    """Whether `path` is a layer of an RTC product beside its backscatter (HyP3 `_ls_map`,
    `_area`, `_rgb`, `_dem`, `_inc_map`; OPERA `_mask`...): read as masks or skipped, never
    ingested as a date."""
    return _ANCILLARY.match(PurePosixPath(str(path)).name) is not None


def _tag(tags: Mapping[str, str], keys: Sequence[str]) -> str | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for key in keys:
        if key in upper and str(upper[key]).strip():
            return str(upper[key]).strip()
    return None


def _scale_from_tags(tags: Mapping[str, str]) -> tuple[str, str] | None:
    upper = {k.upper(): str(v) for k, v in tags.items()}
    for key in _SCALE_TAGS:
        text = upper.get(key, "").lower()
        for word, scale in _SCALE_WORDS:
            if re.search(rf"\b{word}\b", text):
                return scale, f"tag {key}={upper[key]!r}"
    return None


def _pass_direction(tags: Mapping[str, str]) -> str | None:
    text = _tag(tags, _PASS_TAGS)
    if text is None:
        return None
    text = text.upper()
    return "ASCENDING" if text.startswith("ASC") else "DESCENDING" if text.startswith(
        "DESC") else text


def _int_tag(tags: Mapping[str, str], keys: Sequence[str]) -> int | None:
    text = _tag(tags, keys)
    try:
        return None if text is None else int(float(text))
    except ValueError:
        return None


def _sibling(path: str, name: str) -> str:
    # an s3:// URL keeps its scheme; a local path its own separators
    return str(PurePosixPath(path).with_name(name)) if "://" in path else str(
        Path(path).with_name(name))


def recognise_product(path: str, tags: Mapping[str, str], descriptions: Sequence[str | None],
                      nodata: float | None, dtype: str, *,
                      exists: Callable[[str], bool] | None = None) -> Product:
    """What `path` is (module docstring), from its name, tags, band names and nodata value.

    `exists`: a callable saying whether a sibling path exists (the mask layers); default
    `os.path.exists` (s3:// siblings are not looked for).
    """
    has = exists or (lambda p: "://" not in p and os.path.exists(p))
    name = PurePosixPath(str(path)).name
    tag_scale = _scale_from_tags(tags)
    pass_dir = _pass_direction(tags)
    track = _int_tag(tags, _TRACK_TAGS)

    def with_tags(scale: str | None, evidence: str) -> tuple[str | None, str]:
        if scale is None and tag_scale is not None:
            return tag_scale
        return scale, evidence

    if match := _HYP3.match(name) or _HYP3_OLD.match(name):
        base, pol = match["base"], match["pol"].upper()
        letter = match["scale"].lower()
        mask_path = _sibling(path, f"{base}_ls_map.tif")
        rad = match.groupdict().get("rad")
        return Product(
            kind="hyp3-rtc", polarisation=pol, group=_sibling(path, base),
            scale=_SCALE_LETTERS[letter],
            scale_evidence=f"HyP3 RTC file name: scale letter '{letter}'",
            radiometry=None if rad is None else ("gamma0" if rad.lower() == "g" else "sigma0"),
            mask=MaskLayer(mask_path, "hyp3-ls-map") if has(mask_path) else None,
            orbit=track, pass_direction=pass_dir,
        )
    if match := _OPERA.match(name):
        base, pol = match["base"], match["pol"].upper()
        mask_path = _sibling(path, f"{base}_mask.tif")
        scale, evidence = with_tags("power", "OPERA RTC-S1 specification: gamma0, linear power")
        return Product(
            kind="opera-rtc-s1", polarisation=pol, group=_sibling(path, base), scale=scale,
            scale_evidence=evidence, radiometry="gamma0",
            mask=MaskLayer(mask_path, "opera-mask") if has(mask_path) else None,
            orbit=int(match["track"]), pass_direction=pass_dir,
        )
    is_pc_nodata = nodata is not None and nodata == PC_NODATA and dtype == "float32"
    if (match := _PC.match(name)) or is_pc_nodata:
        pol = match["pol"].upper() if match else _single_polarisation(name, tags, descriptions)
        parent = str(PurePosixPath(str(path)).parent)
        return Product(
            kind="planetary-computer-rtc", polarisation=pol,
            group=parent if match else None, scale="power",
            scale_evidence="Planetary Computer sentinel-1-rtc: gamma0, linear power"
            + (" (nodata -32768)" if is_pc_nodata else ""),
            radiometry="gamma0", orbit=track, pass_direction=pass_dir,
        )
    named = [d.upper() for d in descriptions if d]
    if named and all(d in POLARISATIONS or d == "ANGLE" for d in named):
        scale, evidence = tag_scale or (None, "")
        kind = "gee-s1-grd" if "ANGLE" in named else "sar-geotiff"
        return Product(kind=kind, scale=scale, scale_evidence=evidence, orbit=track,
                       pass_direction=pass_dir)
    pol = _single_polarisation(name, tags, descriptions)
    if pol is not None or tag_scale is not None:
        scale, evidence = tag_scale or (None, "")
        return Product(kind="sar-geotiff" if pol else "geotiff", scale=scale,
                       scale_evidence=evidence, orbit=track, pass_direction=pass_dir)
    return Product(kind="geotiff")


def _single_polarisation(name: str, tags: Mapping[str, str],
                         descriptions: Sequence[str | None]) -> str | None:
    if len(descriptions) != 1:
        return None
    if descriptions[0] and descriptions[0].upper() in POLARISATIONS:
        return descriptions[0].upper()
    text = _tag(tags, _POL_TAGS)
    if text and text.upper() in POLARISATIONS:
        return text.upper()
    match = re.search(r"(?:^|[-_.])(VV|VH|HH|HV)(?:[-_.]|$)", PurePosixPath(name).stem,
                      re.IGNORECASE)
    return match[1].upper() if match else None


def polarisation_order(pol: str | None) -> int:
    """Sort key of a band in a grouped acquisition: VV, VH, HH, HV, then anything else."""
    return POLARISATIONS.index(pol) if pol in POLARISATIONS else len(POLARISATIONS)


def mask_pixels(kind: str, values: np.ndarray) -> np.ndarray:
    """True where a mask layer's `values` (as read, NaN outside it) mark a pixel unusable:
    HyP3 ls_map layover (4) or shadow (16) flags; OPERA mask 1, 2, 3 (shadow, layover,
    both) or 255 (invalid sample)."""
    finite = np.isfinite(values)
    codes = np.where(finite, values, 0).astype(np.int64)
    if kind == "hyp3-ls-map":
        return finite & ((codes & HYP3_MASKED_FLAGS) != 0)
    if kind == "opera-mask":
        return finite & np.isin(codes, OPERA_MASKED_VALUES)
    raise ValueError(f"unknown mask kind {kind!r}")
