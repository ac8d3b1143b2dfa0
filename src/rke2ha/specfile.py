"""Load a spec file: YAML with line numbers -> `Spec`, or errors that name path and line.

Kept apart from `spec.py` so the model stays pure data and this module owns the I/O and
the translation of pydantic's errors into messages an operator can act on.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rke2ha.errors import InvalidError, UsageError
from rke2ha.spec import PATTERN_WORDS, Spec
from rke2ha.yamlsource import PathKey, YamlSource, format_path, read_yaml_file

DEFAULT_SPEC_FILE = Path("rke2ha.yaml")


@dataclass(frozen=True)
class SchemaProblem:
    """One value the schema cannot accept."""

    path: str
    line: int | None
    message: str

    def located(self, filename: str) -> str:
        """`file:line: path: message`, the form compilers and editors understand."""
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class SpecSchemaError(InvalidError):
    """The YAML was read but does not fit the spec's schema (exit 1)."""

    def __init__(self, filename: str, problems: list[SchemaProblem]) -> None:
        self.filename = filename
        self.problems = problems
        lines = "\n".join(f"  {p.located(filename)}" for p in problems)
        count = len(problems)
        super().__init__(f"{filename}: {count} invalid value{'s' * (count != 1)}:\n{lines}")


def _allowed_keys(model_path: PathKey) -> list[str]:
    """Field names of the model that sits at `model_path` (for "unknown key" messages)."""
    model: Any = Spec
    for part in model_path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            inner = getattr(candidate, "__args__", None)
            for item in [candidate, *(inner or ())]:
                if isinstance(item, type) and hasattr(item, "model_fields"):
                    model = item
                    break
            else:
                continue
            break
        else:
            return []
    return sorted(model.model_fields)


def _message(error: Any, path: PathKey) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1) if path else []
        guess = f" (did you mean {close[0]}?)" if close else ""
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{guess}{hint}"
    if kind == "missing":
        return "required; add it"
    # pydantic prefixes errors raised inside validators with "Value error, ".
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("bool_type", "bool_parsing"):
        message = "write true or false (unquoted)"
    if kind == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        message = f"may hold only {PATTERN_WORDS.get(pattern, f'text matching {pattern!r}')}"
    if kind == "list_type":
        message += ", written as [a, b] or one '- item' per line"
    given = error.get("input")
    # Show the scalar the operator wrote (a spec holds no secrets, only paths to them).
    if isinstance(given, str | int | float | bool) and kind not in ("literal_error", "enum"):
        shown = repr(given) if len(repr(given)) <= 60 else repr(given)[:57] + "..."
        if repr(given) not in message:  # a validator's message may quote the value itself
            message += f" (got {shown})"
    return message


def _schema_problems(err: ValidationError, source: YamlSource) -> list[SchemaProblem]:
    problems = []
    for error in err.errors():
        path: PathKey = tuple(p for p in error["loc"] if isinstance(p, str | int))
        problems.append(
            SchemaProblem(format_path(path), source.line_of(path), _message(error, path))
        )
    return problems


def spec_from_source(source: YamlSource, source_dir: Path) -> Spec:
    """Validate parsed YAML as a Spec; relative paths in it are relative to `source_dir`."""
    if not isinstance(source.data, dict):
        empty = "the file is empty; " if source.data is None else ""
        raise SpecSchemaError(
            source.filename,
            [
                SchemaProblem(
                    "", 1, f"{empty}the spec must be a YAML mapping (name: ..., hostname: ...)"
                )
            ],
        )
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as err:
        raise SpecSchemaError(source.filename, _schema_problems(err, source)) from None
    spec._source_dir = source_dir.resolve()
    return spec


def spec_path_of(path: Path | str | None) -> Path:
    """The spec file `-f` names, or ./rke2ha.yaml; UsageError when `-f` is empty or absent
    and there is no ./rke2ha.yaml (every command says the same thing)."""
    if path is not None and not str(path).strip():
        raise UsageError("-f is empty; pass the spec file with -f FILE")
    spec_path = Path(path) if path is not None else DEFAULT_SPEC_FILE
    if path is None and not spec_path.exists():
        raise UsageError(
            "no ./rke2ha.yaml here; pass the spec with -f FILE (examples/ has some to start from)"
        )
    return spec_path


def load_spec(path: Path | str | None = None) -> Spec:
    """Read, parse and validate the spec file (default `./rke2ha.yaml`).

    Raises UsageError (exit 2) when the file is missing or not YAML, SpecSchemaError
    (exit 1) when it does not fit the schema.
    """
    spec_path = spec_path_of(path)
    spec = spec_from_source(read_yaml_file(spec_path), spec_path.parent)
    spec._source_file = spec_path.resolve()
    return spec
