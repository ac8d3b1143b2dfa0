"""The stand-in artifacts on this machine: names, layout, sums, and the installer run against
a scratch prefix (root only: it checks for root like the real one)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.support.rke2_standin import (
    ARTIFACT_NAMES,
    CHECKSUMS,
    IMAGES,
    INSTALLER,
    TARBALL,
    build_artifacts,
    build_mirror,
)

VERSION = "v1.33.2+rke2r1"


def test_release_names_layout_and_sums(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path / "a", VERSION)
    assert sorted(p.name for p in dest.iterdir()) == sorted(ARTIFACT_NAMES)
    with tarfile.open(dest / TARBALL) as tar:
        files = {m.name: m for m in tar.getmembers() if m.isfile()}
        server = tar.extractfile(files["bin/rke2"])
        assert server is not None
        text = server.read().decode()
    assert {
        "bin/rke2",
        "bin/rke2-killall.sh",
        "bin/rke2-uninstall.sh",
        "lib/systemd/system/rke2-server.service",
    } <= set(files)
    assert files["bin/rke2"].mode == 0o755
    assert f'VERSION = "{VERSION}"' in text
    sums = dict(reversed(line.split("  ")) for line in (dest / CHECKSUMS).read_text().splitlines())
    for name in (TARBALL, IMAGES):
        assert sums[name] == hashlib.sha256((dest / name).read_bytes()).hexdigest()


def test_same_version_same_bytes_other_version_other_sums(tmp_path: Path) -> None:
    one = build_artifacts(tmp_path / "one", VERSION)
    two = build_artifacts(tmp_path / "two", VERSION)
    other = build_artifacts(tmp_path / "other", "v1.32.6+rke2r1")
    assert (one / CHECKSUMS).read_text() == (two / CHECKSUMS).read_text()
    assert (one / CHECKSUMS).read_text() != (other / CHECKSUMS).read_text()


def test_bad_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RKE2 release name"):
        build_artifacts(tmp_path, "1.33.2")


def test_installer_is_posix_sh(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path, VERSION)
    for shell in ("sh", "dash"):
        done = subprocess.run([shell, "-n", str(dest / INSTALLER)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh needs root, as RKE2's")


def _install(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ["PATH"],
        "INSTALL_RKE2_TAR_PREFIX": str(tmp_path / "prefix"),
        "INSTALL_RKE2_AGENT_IMAGES_DIR": str(tmp_path / "images"),
        "INSTALL_RKE2_SKIP_RELOAD": "1",
        **env,
    }
    script = env.get("INSTALL_RKE2_ARTIFACT_PATH") or str(tmp_path / "mirror" / VERSION)
    return subprocess.run(
        ["sh", f"{script}/install.sh"], env=full, capture_output=True, text=True, timeout=30
    )


@needs_root
def test_airgap_install_places_binary_unit_and_images(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path / "a", VERSION)
    done = _install(tmp_path, INSTALL_RKE2_ARTIFACT_PATH=str(dest))
    assert done.returncode == 0, done.stderr
    prefix = tmp_path / "prefix"
    assert os.access(prefix / "bin" / "rke2", os.X_OK)
    assert (prefix / "lib/systemd/system/rke2-server.service").is_file()
    assert (tmp_path / "images" / IMAGES).read_bytes() == (dest / IMAGES).read_bytes()


@needs_root
def test_corrupt_tarball_stops_before_anything_is_unpacked(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path / "a", VERSION)
    data = bytearray((dest / TARBALL).read_bytes())
    data[-100] ^= 0xFF
    (dest / TARBALL).write_bytes(bytes(data))
    done = _install(tmp_path, INSTALL_RKE2_ARTIFACT_PATH=str(dest))
    assert done.returncode == 1
    assert "download sha256 does not match" in done.stderr
    assert not (tmp_path / "prefix").exists()


@needs_root
def test_corrupt_images_stop_the_install_too(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path / "a", VERSION)
    (dest / IMAGES).write_bytes(b"not the images")
    done = _install(tmp_path, INSTALL_RKE2_ARTIFACT_PATH=str(dest))
    assert done.returncode == 1
    assert "download sha256 does not match" in done.stderr
    assert not (tmp_path / "prefix").exists()
    assert not (tmp_path / "images" / IMAGES).exists()


@needs_root
def test_online_install_reads_the_mirror_and_places_no_images(tmp_path: Path) -> None:
    mirror = build_mirror(tmp_path / "mirror", (VERSION,))
    done = _install(tmp_path, INSTALL_RKE2_VERSION=VERSION, RKE2_STANDIN_MIRROR=str(mirror))
    assert done.returncode == 0, done.stderr
    assert os.access(tmp_path / "prefix" / "bin" / "rke2", os.X_OK)
    assert not (tmp_path / "images").exists()
    missing = _install(
        tmp_path, INSTALL_RKE2_VERSION="v1.30.0+rke2r1", RKE2_STANDIN_MIRROR=str(mirror)
    )
    assert missing.returncode == 1
    assert "no release v1.30.0+rke2r1" in missing.stderr


@needs_root
def test_online_install_finds_the_mirror_in_its_file_as_under_sudo(tmp_path: Path) -> None:
    mirror = build_mirror(tmp_path / "mirror", (VERSION,))
    (tmp_path / "mirror-file").write_text(f"{mirror}\n")
    done = _install(
        tmp_path,
        INSTALL_RKE2_VERSION=VERSION,
        RKE2_STANDIN_MIRROR_FILE=str(tmp_path / "mirror-file"),
    )
    assert done.returncode == 0, done.stderr
    assert os.access(tmp_path / "prefix" / "bin" / "rke2", os.X_OK)
    nothing = _install(
        tmp_path, INSTALL_RKE2_VERSION=VERSION, RKE2_STANDIN_MIRROR_FILE=str(tmp_path / "none")
    )
    assert nothing.returncode == 1
    assert "download failed: no network here" in nothing.stderr


def test_tarball_has_no_owner_or_time_of_the_build(tmp_path: Path) -> None:
    dest = build_artifacts(tmp_path, VERSION)
    with tarfile.open(fileobj=io.BytesIO((dest / TARBALL).read_bytes())) as tar:
        for member in tar.getmembers():
            assert (member.uid, member.gid, member.uname) == (0, 0, "")
