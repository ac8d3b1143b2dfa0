"""Secrets on disk: created once with mode 0600, reused, never printed.

The RKE2 token, TSIG secrets, the lab CA key and bootstrap passwords all go through here,
so the one rule (owner-only files, written atomically, content never in a message) lives
in one place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rke2ha.errors import InvalidError, UsageError

SECRET_MODE = 0o600


def make_private_dirs(folder: Path) -> None:
    """`folder` and every missing parent, each made 0700 (`mkdir(parents=True, mode=...)`
    gives the mode to the last one only: `.rke2ha/` would be 0755 above `secrets/`)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


@contextlib.contextmanager
def _staged(path: Path, content: bytes) -> Iterator[str]:
    """A 0600 temporary file with `content` beside `path` (parents made 0700), for the
    caller to move or link into place; removed afterwards if it is still there."""
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, SECRET_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_secret(path: Path, content: bytes) -> None:
    """Write `content` to `path` atomically with mode 0600 (parents created 0700)."""
    with _staged(path, content) as tmp:
        os.replace(tmp, path)


def create_secret(path: Path, content: bytes) -> bool:
    """Write `content` to a new file `path` (mode 0600) unless `path` exists: True when it was
    written. Never replaces a file (the link fails instead), so a secret someone else wrote in
    the meantime is never lost."""
    with _staged(path, content) as tmp:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    return True


def announce_created(path: Path, what: str) -> None:
    """Tell the operator on stderr that a new secret file exists (never its content): a
    typo in a path the spec names must not silently become a brand-new cluster token."""
    from rke2ha.invocation import shown_path

    print(f"rke2ha: created {what} {shown_path(path)} (0600)", file=sys.stderr)


def ensure_secret(path: Path, nbytes: int = 32, *, what: str = "secret") -> str:
    """The secret in `path`, generating a random hex one (mode 0600) the first time, which
    is announced (`announce_created`) as `what`.

    Stable across calls: an RKE2 token must never change once servers have joined.
    """
    try:
        if not path.exists() and create_secret(path, (secrets.token_hex(nbytes) + "\n").encode()):
            announce_created(path, what)
    except OSError as err:
        raise UsageError(
            f"{path}: cannot reach or create the secret file: {err.strerror or err}; "
            "run as a user who may write there"
        ) from None
    return read_secret(path)


class PlannedSecret:
    """The secret in `path`, or a new random one kept in memory until `keep()` writes it.

    `plan` must write nothing, yet what it shows (a config's fingerprint) must be what
    `up` then writes: both use this one value, and only `up` calls `keep()`.
    """

    def __init__(self, path: Path, nbytes: int = 32, *, what: str = "secret") -> None:
        self.path = path
        self.what = what
        self.missing = not path.exists()
        self.value = secrets.token_hex(nbytes) if self.missing else read_secret(path)

    def keep(self) -> None:
        """Write the new secret (mode 0600); nothing when the file was there already. A file
        that appeared since the plan (another run) is never replaced: the same value is fine,
        another one stops this run before it uses its own."""
        if not self.missing:
            return
        try:
            created = create_secret(self.path, (self.value + "\n").encode())
        except OSError as err:
            raise UsageError(
                f"{self.path}: cannot create the secret file: {err.strerror or err}; "
                "run as a user who may write there"
            ) from None
        if created:
            announce_created(self.path, self.what)
        if not created and read_secret(self.path) != self.value:
            raise InvalidError(
                f"{self.path}: made by someone else while this run had planned a new one; it "
                "was left as it is and nothing that uses it was changed; run the command again"
            )
        self.missing = False


def is_private(path: Path) -> bool:
    """True when only the owner may read or write `path`."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def read_secret(path: Path, *, what: str = "secret") -> str:
    """The stripped text of a secret file; errors name the file and the fix, never the content.

    A file others can read is refused (InvalidError): chmod it to 0600.
    """
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a {what} file; give the file")
    try:
        if not is_private(path):
            raise InvalidError(
                f"{path}: {what} file is readable by others "
                f"(mode {stat.S_IMODE(path.stat().st_mode):o}); run: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} file not found; create it (mode 0600)") from None
    except UnicodeDecodeError:
        raise InvalidError(f"{path}: {what} file is not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read {what} file: {err.strerror}") from None
    if not text:
        raise InvalidError(f"{path}: {what} file is empty")
    return text
