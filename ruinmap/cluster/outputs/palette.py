"""Names and colours of damage classes, shared by the class raster, its QGIS style and map.png.

A class raster is uint8: 0 = no damage detected, 1..k = the method's classes in ascending
severity (named by the job's `class_names`, e.g. possible, likely, high-confidence, severe),
255 = nodata. Colours run from pale yellow to dark red (ColorBrewer YlOrRd, which reads in
grey-scale print and for the common colour-vision deficiencies); class 0 is a light grey so
the area that was analysed stays visible, nodata is transparent.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruinmap.errors import InputError

NODATA_CLASS = 255
NONE_NAME = "none"
NODATA_NAME = "nodata"

RGBA = tuple[int, int, int, int]

NONE_COLOR: RGBA = (224, 224, 224, 255)
NODATA_COLOR: RGBA = (0, 0, 0, 0)
# ColorBrewer YlOrRd 9, without its two palest steps (too close to the grey of class 0).
_RAMP: tuple[tuple[int, int, int], ...] = (
    (254, 217, 118),
    (254, 178, 76),
    (253, 141, 60),
    (252, 78, 42),
    (227, 26, 28),
    (189, 0, 38),
    (128, 0, 38),
)


def damage_colors(n_classes: int) -> list[RGBA]:
    """`n_classes` colours, least to most severe, evenly spaced along the yellow-to-red ramp."""
    if not 1 <= n_classes <= NODATA_CLASS - 1:
        raise InputError(f"n_classes {n_classes}: expected 1..{NODATA_CLASS - 1} damage classes")
    if n_classes == 1:
        return [(*_RAMP[len(_RAMP) // 2], 255)]
    colors = []
    for i in range(n_classes):
        pos = i * (len(_RAMP) - 1) / (n_classes - 1)
        lo = min(int(pos), len(_RAMP) - 2)
        frac = pos - lo
        rgb = tuple(
            round(a + (b - a) * frac) for a, b in zip(_RAMP[lo], _RAMP[lo + 1], strict=True)
        )
        colors.append((rgb[0], rgb[1], rgb[2], 255))
    return colors


def class_categories(class_names: Sequence[str]) -> dict[int, str]:
    """{value: name} of a class raster: 0 none, 1..k `class_names`, 255 nodata."""
    names = [str(name) for name in class_names]
    if not 1 <= len(names) <= NODATA_CLASS - 1:
        raise InputError(
            f"class_names: {len(names)} given, expected 1..{NODATA_CLASS - 1} (one per damage "
            "class, without 'none' and 'nodata', which are added)"
        )
    categories = {0: NONE_NAME}
    categories.update({i + 1: name for i, name in enumerate(names)})
    categories[NODATA_CLASS] = NODATA_NAME
    return categories


def class_colormap(class_names: Sequence[str]) -> dict[int, RGBA]:
    """{value: (r, g, b, a)} of a class raster with these damage classes (see module doc)."""
    colors = {0: NONE_COLOR}
    colors.update({i + 1: c for i, c in enumerate(damage_colors(len(class_names)))})
    colors[NODATA_CLASS] = NODATA_COLOR
    return colors


def hex_color(rgba: RGBA) -> str:
    """'#rrggbb' of an (r, g, b, a) colour (alpha dropped)."""
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])
