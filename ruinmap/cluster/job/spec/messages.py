"""Error messages of a job spec: every pydantic error as `key.path: what is wrong`, with the
valid keys of the table an unknown key was found in (and the closest one)."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from ruinmap.cluster.methods.registry import METHODS, PARAMS_BY_METHOD

__all__ = ["describe_error", "join_problems"]


def join_problems(source: str, problems: Sequence[str]) -> str:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return f"{source}: {unique[0]}"
    return f"{source}: {len(unique)} problems:\n  " + "\n  ".join(unique)


def _key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _model_at(loc: Sequence[str | int], data: Mapping[str, Any],
              root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that validates the table at `loc`, for listing its valid keys."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or isinstance(part, int):
            return None
        if model is root and part == "method_params":
            model = PARAMS_BY_METHOD.get(data.get("method"))  # type: ignore[arg-type]
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def describe_error(error: Mapping[str, Any], data: Mapping[str, Any],
                   root: type[BaseModel]) -> str:
    """One problem of `data` (validated by `root`) as `key.path: what is wrong`."""
    loc = tuple(error["loc"])
    kind = error["type"]
    path = _key_path(loc)
    if kind == "extra_forbidden":
        *parent, key = loc
        model = _model_at(parent, data, root)
        where = f"in [{_key_path(parent)}]" if parent else "at the top level"
        if tuple(parent) == ("method_params",):
            where = f"in [method_params] for method '{data.get('method')}'"
        message = f"{path}: unknown key '{key}' {where}"
        if model is not None:
            valid = list(model.model_fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
            message += f"; valid keys: {', '.join(valid)}"
        return message
    if loc == ("method",) and kind in ("literal_error", "missing"):
        given = "missing" if kind == "missing" else f"'{error.get('input')}' is not a method"
        return f"method: {given}; choose one of {', '.join(METHODS)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind not in ("value_error", "assertion_error") and "input" in error:
        given = error["input"]
        if not isinstance(given, Mapping):
            message += f" (got {given!r})"
    return f"{path}: {message}" if path else message
