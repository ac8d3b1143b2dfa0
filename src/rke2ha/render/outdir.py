"""The output folder of `rke2ha render`: what an earlier render wrote there, and its clean-up.

A render into a folder it rendered before must not leave files of the earlier spec behind:
a TLS key of a layer 7 render, or a Rancher ingress config that trusts X-Forwarded-* (wrong
at layer 4), would stay next to configs that no longer use them. So each render records the
files it wrote in `MANIFEST` (sorted, no timestamps: same spec, same bytes), and the next
render removes those of them it does not write again. Only files listed there are ever
removed. A non-empty folder without a manifest holds files of someone else: refused unless
the caller forces it (then nothing there is removed, only overwritten when rendered).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from rke2ha.errors import UsageError

MANIFEST = ".rke2ha-render.json"
GENERATOR = "rke2ha render"


def _safe_relative(entry: object) -> str | None:
    """`entry` when it is a plain relative path below the folder (no `..`, not absolute)."""
    if not isinstance(entry, str) or not entry or "\0" in entry:
        return None
    path = PurePosixPath(entry)
    if path.is_absolute() or ".." in path.parts or entry == MANIFEST:
        return None
    return entry


def earlier_files(out_dir: Path) -> set[str] | None:
    """The relative paths the manifest in `out_dir` lists; None without a manifest.

    A manifest that cannot be read as one is refused (UsageError): guessing would risk
    removing files rke2ha did not write."""
    manifest = out_dir / MANIFEST
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{manifest}: cannot read the render manifest ({err})") from None
    try:
        document = json.loads(text)
        entries = document["files"] if document.get("generator") == GENERATOR else None
    except (ValueError, AttributeError, KeyError, TypeError):
        entries = None
    if not isinstance(entries, list):
        raise UsageError(
            f"{manifest}: not a render manifest of rke2ha; remove it, or pass -o an empty folder"
        )
    return {safe for entry in entries if (safe := _safe_relative(entry)) is not None}


def prepare(out_dir: Path, *, force: bool) -> set[str]:
    """Check `out_dir` may be rendered into; the files an earlier render wrote there.

    UsageError when it is a file, or a non-empty folder no render wrote (unless `force`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; pass another -o DIR")
    earlier = earlier_files(out_dir) if out_dir.is_dir() else None
    if earlier is not None:
        return earlier
    if out_dir.is_dir() and not force and any(out_dir.iterdir()):
        raise UsageError(
            f"{out_dir}: the folder is not empty and no earlier `rke2ha render` wrote it "
            f"(no {MANIFEST}); pass -o an empty or new folder, or --force to render into it "
            "anyway (files there are overwritten when rendered, none removed)"
        )
    return set()


def write_manifest(out_dir: Path, files: Iterable[str]) -> None:
    """Record `files` (relative paths) as this render's, atomically (mode 0644)."""
    text = json.dumps({"generator": GENERATOR, "files": sorted(set(files))}, indent=2) + "\n"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f"{MANIFEST}.")
    except OSError as err:
        raise UsageError(
            f"{out_dir / MANIFEST}: cannot write: {err.strerror or err}; "
            "pass -o a folder you can write"
        ) from None
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, out_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _inside(out_dir: Path, path: Path) -> bool:
    """The folder holding `path`, symbolic links resolved, is `out_dir` or below it."""
    root = out_dir.resolve()
    parent = path.parent.resolve()
    return parent == root or root in parent.parents


def remove_stale(out_dir: Path, earlier: set[str], current: set[str]) -> list[Path]:
    """Remove the files an earlier render wrote that this one did not; the paths removed.

    Folders left empty by that are removed too (never `out_dir` itself). A listed path that
    is no longer a plain file (someone put a folder there) is left alone."""
    removed = []
    for relative in sorted(earlier - current):
        path = out_dir / relative
        if not _inside(out_dir, path) or path.is_symlink() or not path.is_file():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UsageError(
                f"{path}: cannot remove a file of the earlier render: {err.strerror or err}"
            ) from None
        removed.append(path)
        parent = path.parent
        while parent != out_dir and _inside(out_dir, parent):
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or not ours to remove): stop climbing
            parent = parent.parent
    return removed
