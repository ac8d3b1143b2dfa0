"""What a plan changes, in words a person can review: spec fields and config file lines.

A digest says *that* something changed; a reviewer needs *what*. The state keeps a record
of the spec it was last applied from (`spec_record`: the file, a digest and every field
as a flat `dotted.path -> value` map), so the next plan can name the fields that differ
(`field_changes`, Terraform-style `old -> new`), and rendered config files can be
compared line by line (`unified`). Pure: no I/O beyond what the caller hands in.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rke2ha.plan import PropertyDiff
from rke2ha.spec import Spec


def spec_digest(spec: Spec) -> str:
    """A short digest of the spec's content (every field, defaults filled in)."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}, "n": [{"x": 2}]}` -> `{"a.b": 1, "n[0].x": 2}`; lists of plain
    values stay one value (`ports: [80, 443]` reads better whole)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def spec_fields(spec: Spec) -> dict[str, Any]:
    return flatten(spec.model_dump(mode="json"))


def spec_record(spec: Spec, spec_file: Path | None) -> dict[str, Any]:
    """What the state keeps about the spec it was applied from (no secrets: the spec
    names secret files, never their content)."""
    return {
        "file": str(spec_file.resolve()) if spec_file is not None else None,
        "digest": spec_digest(spec),
        "fields": spec_fields(spec),
    }


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[PropertyDiff]:
    """The fields whose value differs, in path order (absent on one side: None there)."""
    return [
        PropertyDiff(key, before.get(key), after.get(key))
        for key in sorted({*before, *after})
        if before.get(key) != after.get(key)
    ]


def unified(path: str, before: str, after: str) -> str:
    """A unified diff of one file (empty when equal), labelled running / this spec."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (running)",
        tofile=f"{path} (this spec)",
        n=2,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
