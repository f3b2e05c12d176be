"""The `[districts]` and `[buildings]` tables: the polygons results are aggregated over."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pyproj import CRS
from pyproj.exceptions import CRSError

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["BuildingsSpec", "DistrictsSpec"]

_CRS_HELP = ("the CRS of the file's coordinates (e.g. EPSG:32637), overriding the file's own: "
             "for a GeoJSON written in metres without a `crs` member")


def _checked_crs(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        CRS.from_user_input(value)
    except CRSError as exc:
        raise ValueError(f"'{value}' is not a CRS ({exc}); use e.g. EPSG:32637 or WKT") from None
    return value


class DistrictsSpec(SpecModel):
    """District polygons, any CRS; `id` is the key field, `name` an optional label field."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str = Field(description="field holding each district's unique key")
    name: str | None = Field(default=None, description="field holding a readable name")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")
    crs: str | None = Field(default=None, description=_CRS_HELP)
    admin_level: int = Field(default=2, ge=1, le=5,
                             description="the districts' admin level, for the HXL tag of "
                                         "the key in districts_hxl.csv (#adm2+code)")

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info)

    @field_validator("crs")
    @classmethod
    def _valid_crs(cls, value: str | None) -> str | None:
        return _checked_crs(value)


class BuildingsSpec(SpecModel):
    """Optional building footprints (polygons, any CRS) for per-building scores."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str | None = Field(default=None, description="key field; default: row number")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")
    crs: str | None = Field(default=None, description=_CRS_HELP)

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info)

    @field_validator("crs")
    @classmethod
    def _valid_crs(cls, value: str | None) -> str | None:
        return _checked_crs(value)
