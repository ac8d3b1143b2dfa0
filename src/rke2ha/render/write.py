"""Write a `Rendering` into a folder: plain files 0644, secret files 0600 via secretfiles.

Each file is replaced atomically (temporary file + rename), so a reader never sees half a
config and a failed render leaves the previous file in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rke2ha.errors import UsageError
from rke2ha.render.bundle import Rendering
from rke2ha.secretfiles import write_secret

PLAIN_MODE = 0o644
EXECUTABLE_MODE = 0o755


def _write_plain(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_rendering(rendering: Rendering, out_dir: Path) -> list[Path]:
    """Write every file under `out_dir`; the paths written, in order."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; pass another -o DIR")
    written = []
    for relative, rendered in rendering.files.items():
        path = out_dir / relative
        try:
            if rendered.secret:
                write_secret(path, rendered.text.encode("utf-8"))
            else:
                mode = EXECUTABLE_MODE if relative.endswith(".sh") else PLAIN_MODE
                _write_plain(path, rendered.text, mode)
        except OSError as err:
            raise UsageError(
                f"{path}: cannot write: {err.strerror or err}; pass -o a folder you can write"
            ) from None
        written.append(path)
    return written
