"""Write the spec reference, docs/spec-reference.md, from the spec's models.

`python -m rke2ha.specdoc` (`make spec-reference`) regenerates the file; `--check` only
compares and exits 1 when the file differs from what the models say. A developer tool
rather than an `rke2ha` command: the reference is read in the repository, and users get
the same text for their installed version from the models' descriptions there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rke2ha.spec import PROVIDERS
from rke2ha.specfields import SpecBlock, SpecField, spec_blocks

REFERENCE = Path("docs/spec-reference.md")
REGENERATE = "make spec-reference (or: .venv/bin/python -m rke2ha.specdoc)"

_INTRO = f"""\
# Spec reference

<!-- Generated from src/rke2ha/spec.py by `{REGENERATE}`; do not edit by hand. -->

Every field of the spec file (`rke2ha.yaml`), block by block: its YAML path, type, default,
which providers act on it and what it does. Unknown keys are errors. Durations accept `500ms`,
`2s`, `1m`; relative paths are relative to the spec file. The README's "The spec" section has
a complete example, `examples/` one valid spec per provider, and `rke2ha init` writes a
commented one.

**Providers**: the providers whose `plan`/`up`/`check` (and the files `render` writes for
them) use the field. The others ignore it, and `rke2ha validate` warns when a spec sets it
(rule `provider.ignored`). A default left empty means none; where it depends on other fields,
the description says how.
"""


def _cell(text: str) -> str:
    # A `|` would end the table cell.
    return text.replace("|", "\\|")


def _providers(field: SpecField) -> str:
    if field.providers == PROVIDERS:
        return "all"
    return ", ".join(field.providers) or "none"


def _block(block: SpecBlock) -> list[str]:
    lines = [f"## {block.title}", ""]
    if block.description:
        lines += [block.description, ""]
    lines += ["| field | type | default | providers | what it does |", "|---|---|---|---|---|"]
    for field in block.fields:
        cells = [
            f"`{field.path}`",
            field.type,
            f"**{field.default}**" if field.required else field.default,
            _providers(field),
            field.description,
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return [*lines, ""]


def render_reference() -> str:
    """The whole reference, as committed in docs/spec-reference.md."""
    lines = [_INTRO]
    for block in spec_blocks():
        lines += _block(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rke2ha.specdoc", description="Write the spec reference from the models."
    )
    parser.add_argument("-o", "--out", type=Path, default=REFERENCE, help=f"(default {REFERENCE})")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs; write nothing"
    )
    args = parser.parse_args(argv)
    text = render_reference()
    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(
                f"{out} is out of date with src/rke2ha/spec.py; run: {REGENERATE}", file=sys.stderr
            )
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
