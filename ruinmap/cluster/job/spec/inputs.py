"""The `[inputs]` table: the imagery, as pre and post globs, an ingested store, or a STAC
source (`[inputs.stac]`: an API search or a static catalog, `ingest.stac`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.ingest.inplace import INGEST_MODES
from ruinmap.cluster.ingest.stac import SCL_CLOUD_CLASSES, StacQuery
from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["InputsSpec", "StacSpec"]


class StacSpec(SpecModel):
    """`[inputs.stac]`: Sentinel-1 (or Sentinel-2 L2A) over an area and dates, from a STAC API
    (`url`) or a static catalog, collection or ItemCollection JSON (`catalog`)."""

    url: str | None = Field(default=None, description="a STAC API's root URL (http(s)://)")
    catalog: str | None = Field(
        default=None,
        description="a static catalog / collection / ItemCollection JSON (path, http(s):// "
                    "or s3://)",
    )
    collections: tuple[str, ...] = Field(default=(), description="collection ids searched")
    bbox: tuple[float, float, float, float] | None = Field(
        default=None,
        description="west, south, east, north in degrees; default: the districts' extent",
    )
    pre_datetime: str = Field(description="pre-event interval, 'start/end' (ISO 8601)")
    post_datetime: str = Field(description="post-event interval, 'start/end' (ISO 8601)")
    query: dict[str, Any] | None = Field(default=None,
                                         description="STAC API query extension (API only)")
    filter: dict[str, Any] | None = Field(default=None,
                                          description="CQL2 JSON filter (API only)")
    assets: tuple[str, ...] = Field(
        default=("vv", "vh"),
        description="one asset per band, by key or role (Sentinel-2 L2A: B04, B08, B11)",
    )
    mask: str | None = Field(
        default=None, description="a class-mask asset (Sentinel-2 L2A: SCL) whose "
                                  "mask_classes are nodata")
    mask_classes: tuple[int, ...] = Field(
        default=SCL_CLOUD_CLASSES,
        description="mask classes that are nodata (default SCL 3, 8, 9, 10: cloud shadow, "
                    "cloud medium and high probability, cirrus)",
    )
    sign: str | None = Field(
        default=None, description="URL signer: 'planetary_computer' or 'module:function'")
    max_items: int = Field(default=10000, ge=1, description="most items a side may have")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' is not an http(s):// URL of a STAC API")
        return value

    @field_validator("catalog")
    @classmethod
    def _resolve_catalog(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.startswith(("http://", "https://", "s3://")):
            return value
        return spec_path(value, info)

    @field_validator("assets")
    @classmethod
    def _some_assets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("give one or more distinct asset keys or roles")
        return value

    @field_validator("bbox")
    @classmethod
    def _ordered_bbox(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and not (value[0] < value[2] and value[1] < value[3]):
            raise ValueError(f"{list(value)}: expected west, south, east, north (min < max)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> StacSpec:
        if (self.url is None) == (self.catalog is None):
            raise ValueError("give either url (a STAC API) or catalog (a static catalog)")
        return self

    def query_for(self, bbox: tuple[float, float, float, float] | None) -> StacQuery:
        """The ingest's query; `bbox` (lon/lat, the districts' extent) when none is given."""
        source = self.url if self.url is not None else self.catalog
        assert source is not None  # model invariant
        return StacQuery(
            source=source, is_api=self.url is not None, pre_datetime=self.pre_datetime,
            post_datetime=self.post_datetime, collections=self.collections,
            bbox=self.bbox if self.bbox is not None else bbox, query=self.query,
            filter=self.filter, assets=self.assets, mask=self.mask,
            mask_classes=self.mask_classes, sign=self.sign, max_items=self.max_items,
        )


class InputsSpec(SpecModel):
    """Imagery: `pre` and `post` globs/files (as for `ruinmap ingest`), or an existing `store`."""

    pre: tuple[str, ...] | None = Field(
        default=None, description="globs or files of the pre-event images"
    )
    post: tuple[str, ...] | None = Field(
        default=None, description="globs or files of the post-event images"
    )
    store: str | None = Field(
        default=None,
        description="an existing store written by `ruinmap ingest`, instead of pre/post",
    )
    scale: str = Field(
        default="auto",
        description="scale of the SAR inputs: auto (from metadata, else the values), power, "
        "amplitude or db; the ingest converts them to linear power",
    )
    bands: tuple[str, ...] | None = Field(
        default=None,
        description="names of the images' bands, in order (default: the band descriptions, "
        "else b1..bN)",
    )
    ingest: str = Field(
        default="always",
        description="always: copy every date into the job's store; auto: tiles read in "
        "place the local tiled GeoTIFFs (COGs) already on the grid, and only the rest is "
        "copied; never: read every date in place, refusing a file that would need copying",
    )

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: str) -> str:
        text = value.strip().lower()
        text = "db" if text in ("decibel", "decibels") else text
        if text not in ("auto", "power", "amplitude", "db"):
            raise ValueError(f"{value!r}: use auto, power, amplitude or db")
        return text

    @field_validator("ingest")
    @classmethod
    def _known_ingest(cls, value: str) -> str:
        text = value.strip().lower()
        if text not in INGEST_MODES:
            raise ValueError(f"{value!r}: use {', '.join(INGEST_MODES)}")
        return text

    @field_validator("bands", mode="before")
    @classmethod
    def _bands_list(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else value
    stac: StacSpec | None = Field(
        default=None, description="a STAC API search or static catalog, instead of pre/post"
    )

    @field_validator("pre", "post", mode="before")
    @classmethod
    def _one_string_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("pre", "post")
    @classmethod
    def _resolve_patterns(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("empty list; give at least one glob or file")
        return tuple(spec_path(pattern, info, allow_url=True) for pattern in value)

    @field_validator("store")
    @classmethod
    def _resolve_store(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else spec_path(value, info, allow_url=True)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InputsSpec:
        has_images = self.pre is not None or self.post is not None
        if self.stac is not None:
            if has_images or self.store is not None:
                raise ValueError("give stac (a STAC source) alone, without pre/post or store")
            return self
        if has_images and self.store is not None:
            raise ValueError(
                "give either pre and post (image files) or store (an ingested store), not both"
            )
        if not has_images and self.store is None:
            raise ValueError("give pre and post (image files), store (an ingested store), or "
                             "[inputs.stac] (a STAC source)")
        if has_images and (self.pre is None or self.post is None):
            missing = "post" if self.post is None else "pre"
            raise ValueError(f"{missing} is missing; pre and post go together")
        return self
