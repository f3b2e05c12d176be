"""The `[districts]` and `[buildings]` tables: the polygons results are aggregated over."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["BuildingsSpec", "DistrictsSpec"]


class DistrictsSpec(SpecModel):
    """District polygons, any CRS; `id` is the key field, `name` an optional label field."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str = Field(description="field holding each district's unique key")
    name: str | None = Field(default=None, description="field holding a readable name")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info)


class BuildingsSpec(SpecModel):
    """Optional building footprints (polygons, any CRS) for per-building scores."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str | None = Field(default=None, description="key field; default: row number")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info)
