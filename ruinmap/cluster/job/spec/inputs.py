"""The `[inputs]` table: the imagery, as pre and post globs or an ingested store."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["InputsSpec"]


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

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: str) -> str:
        text = value.strip().lower()
        text = "db" if text in ("decibel", "decibels") else text
        if text not in ("auto", "power", "amplitude", "db"):
            raise ValueError(f"{value!r}: use auto, power, amplitude or db")
        return text

    @field_validator("bands", mode="before")
    @classmethod
    def _bands_list(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else value

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
        if has_images and self.store is not None:
            raise ValueError(
                "give either pre and post (image files) or store (an ingested store), not both"
            )
        if not has_images and self.store is None:
            raise ValueError("give pre and post (image files), or store (an ingested store)")
        if has_images and (self.pre is None or self.post is None):
            missing = "post" if self.post is None else "pre"
            raise ValueError(f"{missing} is missing; pre and post go together")
        return self
