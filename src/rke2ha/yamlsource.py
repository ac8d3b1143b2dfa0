"""Read YAML while remembering where each value came from, so errors can name the line.

PyYAML's composer gives us nodes with marks; we construct plain data with the safe
constructor and, walking the same node tree, record `path -> line` for every key and item.
Duplicate keys, which PyYAML would silently resolve to the last one, are reported instead:
an operator who wrote `ports` twice meant one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rke2ha.errors import InvalidError, UsageError

PathKey = tuple[str | int, ...]


@dataclass
class YamlSource:
    """Parsed YAML data plus the 1-based line of every path in it."""

    data: Any
    filename: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class DuplicateKeyError(InvalidError):
    """A mapping key given twice (exit 1); `path` and `line` say where the second one is."""

    def __init__(self, filename: str, path: str, line: int, first_line: int) -> None:
        self.filename, self.path, self.line, self.first_line = filename, path, line, first_line
        super().__init__(
            f"{filename}:{line}: {path}: key given twice (first on line {first_line}); "
            "keep one of them"
        )


def format_path(path: PathKey) -> str:
    """`("load_balancer", "ports", 2)` -> `load_balancer.ports[2]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], filename: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(filename, format_path((*path, key)), line, seen[key])
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, filename)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, filename)


def _yaml_hint(problem: str) -> str:
    """What to do about PyYAML's most common complaints, which name the symptom only."""
    if "'\\t'" in problem:
        return "; YAML indents with spaces, not tabs: replace the tab with spaces"
    if "mapping values are not allowed" in problem:
        return (
            "; check this line's indentation against the line above, and quote a value "
            "that contains ': '"
        )
    return ""


def line_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` into `text` (characters, or bytes for bytes)."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    before = text[:offset]
    line_start = before.rfind(newline) + 1  # type: ignore[arg-type]
    return before.count(newline) + 1, offset - line_start + 1  # type: ignore[arg-type]


def parse_yaml(text: str, filename: str = "<spec>") -> YamlSource:
    """Parse one YAML document; raise UsageError (exit 2) when it is not YAML."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        problem = str(err.problem or err)
        if mark is not None and problem == "but found another document":
            raise UsageError(
                f"{filename}:{mark.line + 1}: the spec must be one YAML document; remove the "
                f"`---` on line {mark.line + 1} and what follows it, or merge the two"
            ) from None
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise UsageError(f"{where}: not valid YAML: {problem}{_yaml_hint(problem)}") from None
    except yaml.reader.ReaderError as err:
        # A character YAML does not allow (NUL, other control characters): PyYAML gives
        # only an offset into the text; say where it is as an editor counts.
        line, column = line_column(text, err.position)
        raise UsageError(
            f"{filename}:{line}:{column}: not valid YAML: character U+{err.character:04X} is "
            "not allowed in YAML (control characters are not); remove it"
        ) from None
    except yaml.YAMLError as err:
        raise UsageError(f"{filename}: not valid YAML: {err}") from None
    lines: dict[PathKey, int] = {}
    if node is not None:
        _walk(node, (), lines, filename)
    return YamlSource(data=data, filename=filename, lines=lines)


def read_yaml_file(path: Path) -> YamlSource:
    """Read and parse `path`; a missing or unreadable file is a UsageError (exit 2)."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no such file; write one with `rke2ha init -f {path}` (a commented spec), "
            "or pass another with -f FILE"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory; pass the spec file with -f FILE") from None
    except UnicodeDecodeError as err:
        line, byte_column = line_column(raw, err.start)
        # Columns count characters, as editors do: decode the line up to the bad byte.
        prefix = raw[err.start - byte_column + 1 : err.start]
        column = len(prefix.decode("utf-8", errors="replace")) + 1
        raise UsageError(
            f"{path}:{line}:{column}: not UTF-8 text (byte {raw[err.start : err.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror}") from None
    return parse_yaml(text, str(path))
