"""The spec's fields as data: path, type, default, description and the providers using each.

Read from the pydantic models in `rke2ha.spec` (their `Field(description=...)`, docstrings
and `used_by` data), so the spec reference (`rke2ha.specdoc`) and rule `provider.ignored`
describe exactly the schema that `validate` enforces. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rke2ha.durations import format_duration, parse_duration
from rke2ha.spec import PROVIDERS, Spec


@dataclass(frozen=True)
class SpecField:
    """One field of the spec, wherever it sits (`nodes[].address` for list items)."""

    path: str
    type: str
    default: str  # as written in YAML; "required" or "" (no default) otherwise
    required: bool
    description: str
    providers: tuple[str, ...]  # who acts on it, inherited from the enclosing blocks
    instead: str  # what users of the other providers set in its place ("" if nothing)


@dataclass(frozen=True)
class SpecBlock:
    """A mapping of the spec (the top level, `load_balancer`, `nodes[]`, ...) and its fields."""

    path: str  # "" for the top level
    model: type[BaseModel]
    fields: tuple[SpecField, ...]

    @property
    def title(self) -> str:
        return self.path or "top level"

    @property
    def description(self) -> str:
        return " ".join((self.model.__doc__ or "").split())


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def _model_in(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds, and whether it is a list of them (`nodes`)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
        return None
    if origin is list:
        inner = _model_in(get_args(annotation)[0])
        return (inner[0], True) if inner is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None


def _anchor(path: str) -> str:
    """GitHub's anchor for a heading `path` (punctuation dropped, spaces to dashes)."""
    return re.sub(r"[^a-z0-9_ -]", "", path.lower()).replace(" ", "-")


def _constraints(metadata: list[Any]) -> str:
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    shortest = next((m.min_length for m in metadata if isinstance(m, MinLen)), None)
    longest = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    if low is not None and high is not None:
        return f" {low} to {high}"
    if low is not None:
        return f" ≥ {low}"
    if shortest is not None and longest is not None:
        return f", {shortest} to {longest} characters"
    return ""


def _is_duration(metadata: list[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in metadata)


def _type(annotation: Any, metadata: list[Any], block_path: str) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *more = get_args(annotation)
        flat = [
            m for item in more for m in (item.metadata if isinstance(item, FieldInfo) else [item])
        ]
        return _type(inner, metadata + flat, block_path)
    if _is_duration(metadata):
        return "duration (`500ms`, `2s`, `1m`)"
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        kinds = [
            _type(a, metadata, block_path) for a in get_args(annotation) if a is not type(None)
        ]
        return " or ".join(kinds)
    if origin is list:
        return "list of " + _type(get_args(annotation)[0], [], block_path)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ([{block_path}](#{_anchor(block_path)}))"
    names = {str: "string", int: "integer", float: "number", bool: "true or false", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + _constraints(
        metadata
    )


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return ""
    if isinstance(value, BaseModel):
        return "its defaults"
    if _is_duration(info.metadata):
        return f"`{format_duration(float(value))}`"
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return f"`{text.removesuffix('...').strip()}`"


def _blocks(
    model: type[BaseModel], path: str, providers: tuple[str, ...], instead: str
) -> Iterator[SpecBlock]:
    fields: list[SpecField] = []
    nested: list[tuple[type[BaseModel], str, tuple[str, ...], str]] = []
    for name, info in model.model_fields.items():
        field_path = f"{path}.{name}" if path else name
        extra = _extra(info)
        own = tuple(extra.get("providers", PROVIDERS))
        used = tuple(p for p in providers if p in own)
        hint = str(extra.get("instead", "")) or instead
        held = _model_in(info.annotation)
        block_path = f"{field_path}[]" if held is not None and held[1] else field_path
        fields.append(
            SpecField(
                field_path,
                _type(info.annotation, list(info.metadata), block_path),
                _default(info),
                info.is_required(),
                " ".join((info.description or "").split()),
                used,
                hint,
            )
        )
        if held is not None:
            nested.append((held[0], block_path, used, hint))
    yield SpecBlock(path, model, tuple(fields))
    for inner, inner_path, used, hint in nested:
        yield from _blocks(inner, inner_path, used, hint)


@functools.cache
def spec_blocks() -> tuple[SpecBlock, ...]:
    """Every mapping of the spec with its fields, top level first, in the models' order."""
    return tuple(_blocks(Spec, "", PROVIDERS, ""))


def spec_fields() -> dict[str, SpecField]:
    """Every field by its path (`nodes[].address` for the fields of list items)."""
    return {field.path: field for block in spec_blocks() for field in block.fields}


def generic_path(path: str) -> str:
    """`nodes[2].address` -> `nodes[].address`, the key of `spec_fields`."""
    return re.sub(r"\[\d+\]", "[]", path)
