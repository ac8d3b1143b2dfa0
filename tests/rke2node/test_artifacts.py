"""The air-gap artifacts checked on this machine before any upload."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rke2ha.errors import InvalidError
from rke2ha.rke2node.artifacts import parse_sums, verified


def _release(folder: Path) -> Path:
    folder.mkdir()
    tar, images = b"tarball bytes", b"images bytes"
    (folder / "install.sh").write_text("#!/bin/sh\n")
    (folder / "rke2.linux-amd64.tar.gz").write_bytes(tar)
    (folder / "rke2-images.linux-amd64.tar.zst").write_bytes(images)
    (folder / "sha256sum-amd64.txt").write_text(
        f"{hashlib.sha256(tar).hexdigest()}  rke2.linux-amd64.tar.gz\n"
        f"{hashlib.sha256(images).hexdigest()}  rke2-images.linux-amd64.tar.zst\n"
        f"{'ab' * 32}  rke2.linux-arm64.tar.gz\n"
    )
    return folder


def test_a_complete_release_verifies_install_sh_first_sums_last(tmp_path):
    files = verified(_release(tmp_path / "a"))
    assert [f.name for f in files] == [
        "install.sh",
        "rke2.linux-amd64.tar.gz",
        "rke2-images.linux-amd64.tar.zst",
        "sha256sum-amd64.txt",
    ]
    assert files[1].sha256 == hashlib.sha256(b"tarball bytes").hexdigest()


def test_a_corrupted_tarball_is_named_and_nothing_is_uploaded(tmp_path):
    folder = _release(tmp_path / "a")
    (folder / "rke2-images.linux-amd64.tar.zst").write_bytes(b"images bytez")
    with pytest.raises(InvalidError) as err:
        verified(folder)
    assert "rke2-images.linux-amd64.tar.zst does not match sha256sum-amd64.txt" in str(err.value)
    assert "nothing was uploaded" in str(err.value)


def test_missing_files_are_listed(tmp_path):
    folder = _release(tmp_path / "a")
    (folder / "install.sh").unlink()
    with pytest.raises(InvalidError, match=r"install.sh missing"):
        verified(folder)


def test_sums_file_format():
    sums = parse_sums(f"{'A' * 64} *dir/x.tar\nnot a line\n{'b' * 64}  y\n")
    assert sums == {"x.tar": "a" * 64, "y": "b" * 64}
