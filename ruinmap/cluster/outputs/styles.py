"""The side-car files that make a class raster show named, coloured classes in any GIS.

- category names in `<name>.tif.aux.xml` (GDAL PAM; GeoTIFF has no tag for them), which QGIS
  reads as the class labels of the colour table;
- a `<name>.qml` QGIS style (paletted renderer with only the used classes and their labels),
  which QGIS loads automatically as the layer's default style;
- for a damage grid (`grid.tif`), `<name>.qml`: a single-band pseudocolour renderer of band 1
  (the damaged fraction, 0-1) on the classes' yellow-to-red ramp, so QGIS shows the grid as a
  map of damage rather than two bands as RGB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ruinmap.cluster.outputs.palette import (
    NODATA_CLASS,
    class_categories,
    class_colormap,
    damage_colors,
    hex_color,
)
from ruinmap.cluster.storage.durable import write_text_atomic

__all__ = ["pam_path", "write_class_sidecars", "write_fraction_style"]


# what every raster style of ours shares around its renderer
_QML_HEAD = ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
             '<qgis version="3.28.0" styleCategories="Symbology">\n'
             "  <pipe>\n")
_QML_TAIL = ('    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
             '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
             '    <rasterresampler maxOversampling="2"/>\n'
             "  </pipe>\n"
             "  <blendMode>0</blendMode>\n"
             "</qgis>\n")


def pam_path(path: Path) -> Path:
    """The GDAL PAM side-car of a raster: `<name>.aux.xml`."""
    return path.with_name(path.name + ".aux.xml")


def write_class_sidecars(dst: str | os.PathLike[str], class_names: Sequence[str]) -> list[Path]:
    """Write the category names (`<dst>.aux.xml`) and QGIS style (`<stem>.qml`) of a class
    raster; returns their paths. `write_cog(..., class_names=...)` calls this."""
    dst = Path(dst)
    categories = class_categories(class_names)
    colors = class_colormap(class_names)
    names = [categories.get(value, "") for value in range(max(categories) + 1)]
    pam = (
        "<PAMDataset>\n"
        '  <PAMRasterBand band="1">\n'
        "    <CategoryNames>\n"
        + "".join(f"      <Category>{escape(name)}</Category>\n" for name in names)
        + "    </CategoryNames>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )
    entries = "".join(
        f"        <paletteEntry value={quoteattr(str(value))} "
        f"color={quoteattr(hex_color(colors[value]))} alpha={quoteattr(str(colors[value][3]))} "
        f"label={quoteattr(name)}/>\n"
        for value, name in categories.items()
        if value != NODATA_CLASS
    )
    qml = (
        f"{_QML_HEAD}"
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" '
        'nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <colorPalette>\n"
        f"{entries}"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
        f"{_QML_TAIL}"
    )
    return [
        write_text_atomic(pam_path(dst), pam),
        write_text_atomic(dst.with_suffix(".qml"), qml),
    ]


def write_fraction_style(dst: str | os.PathLike[str], band_name: str,
                         steps: int = 5) -> Path:
    """`<stem>.qml`: band 1 of `dst` as a 0-1 pseudocolour ramp in `steps` colours (a
    fraction; pale yellow at 0 to dark red at 1), labelled in percent. Returns its path."""
    dst = Path(dst)
    colors = damage_colors(steps)
    items = "".join(
        f"          <item value={quoteattr(f'{i / (steps - 1):g}')} "
        f"color={quoteattr(hex_color(c))} alpha=\"255\" "
        f"label={quoteattr(f'{100 * i / (steps - 1):g} %')}/>\n"
        for i, c in enumerate(colors)
    )
    qml = (
        f"{_QML_HEAD}"
        '    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" '
        f'alphaBand="-1" classificationMin="0" classificationMax="1" '
        f'nodataColor="" description={quoteattr(band_name)}>\n'
        "      <rasterTransparency/>\n"
        "      <rastershader>\n"
        '        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" '
        'clip="0" minimumValue="0" maximumValue="1">\n'
        f"{items}"
        "        </colorrampshader>\n"
        "      </rastershader>\n"
        "    </rasterrenderer>\n"
        f"{_QML_TAIL}"
    )
    return write_text_atomic(dst.with_suffix(".qml"), qml)
