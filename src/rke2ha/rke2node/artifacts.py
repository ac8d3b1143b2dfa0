"""The air-gap artifacts of one RKE2 release on this machine, checked before any upload.

RKE2's air-gap tarball method needs `rke2.linux-amd64.tar.gz`, `rke2-images.linux-amd64.tar.zst`
and `sha256sum-amd64.txt` in one folder with `install.sh`, which is run with
`INSTALL_RKE2_ARTIFACT_PATH` pointing at it (https://docs.rke2.io/install/airgap, "Tarball
Method"). The sums file is the release's own (`<sha256>  <file>` lines, sha256sum's format)
and holds the tarballs, not install.sh (that comes from get.rke2.io): install.sh is checked
on the node against the sum taken here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rke2ha.errors import InvalidError

SUMS = "sha256sum-amd64.txt"
INSTALLER = "install.sh"
SUMMED = ("rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    sha256: str


def parse_sums(text: str) -> dict[str, str]:
    """{file name: sha256} of sha256sum output (`*` marks binary mode; paths reduced to names)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            continue
        name = parts[1].lstrip("*").rsplit("/", 1)[-1]
        sums[name] = parts[0].lower()
    return sums


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder: Path) -> tuple[list[Artifact], tuple[str, str] | None]:
    """The files to upload (the sums file last) and the first problem as (what, fix):
    a missing file, a tarball without a sum or with another one. `validate` reports the
    problem on the field; `verified` refuses to upload."""
    missing = [n for n in (INSTALLER, *SUMMED, SUMS) if not (folder / n).is_file()]
    if missing:
        return [], (
            f"{', '.join(missing)} missing",
            f"put the release's {', '.join(SUMMED)} and {SUMS} (and install.sh from "
            "get.rke2.io) there",
        )
    sums = parse_sums((folder / SUMS).read_text(errors="replace"))
    files: list[Artifact] = []
    for name in SUMMED:
        expected = sums.get(name)
        if expected is None:
            return [], (
                f"{SUMS} has no sum for {name}",
                f"use the {SUMS} of the same release as {name}",
            )
        actual = file_sha256(folder / name)
        if actual != expected:
            return [], (
                f"{name} does not match {SUMS} (sha256 {actual[:16]}..., expected "
                f"{expected[:16]}...)",
                f"download {name} again",
            )
        files.append(Artifact(name, folder / name, actual))
    files.insert(0, Artifact(INSTALLER, folder / INSTALLER, file_sha256(folder / INSTALLER)))
    files.append(Artifact(SUMS, folder / SUMS, file_sha256(folder / SUMS)))
    return files, None


def verified(folder: Path) -> list[Artifact]:
    """The files to upload (the sums file last), each checked here; InvalidError names the
    first missing or mismatching file, before anything has left this machine."""
    files, problem = check(folder)
    if problem is not None:
        what, fix = problem
        raise InvalidError(
            f"rke2.airgap.artifacts {folder}: {what}; nothing was uploaded; fix: {fix}"
        )
    return files


def installer(folder: Path) -> Artifact:
    """install.sh alone (online installs from a local copy of get.rke2.io's script)."""
    path = folder / INSTALLER
    return Artifact(INSTALLER, path, file_sha256(path))
