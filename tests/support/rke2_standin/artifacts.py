"""Build the stand-in RKE2 release artifacts, with the names and layout of a real release.

`build_artifacts(dest, version)` writes into `dest`:

- `rke2.linux-amd64.tar.gz`: `bin/rke2` (the stand-in server, payload/rke2.py with the
  version baked in), `bin/rke2-killall.sh`, `bin/rke2-uninstall.sh`,
  `lib/systemd/system/rke2-server.service`, `share/rke2/LICENSE.txt`;
- `rke2-images.linux-amd64.tar.zst`: filler bytes (only placed and summed; nothing loads it);
- `sha256sum-amd64.txt`: `<sha256>  <name>` for the two tarballs, as a release lists them;
- `install.sh`: the stand-in installer (payload/install.sh).

The bytes depend only on `version` and the payload, so two builds are identical (fixed
mtimes, owners and gzip header) and the sums can be compared across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

DEFAULT_VERSION = "v1.33.2+rke2r1"
ARCH = "amd64"
TARBALL = f"rke2.linux-{ARCH}.tar.gz"
IMAGES = f"rke2-images.linux-{ARCH}.tar.zst"
CHECKSUMS = f"sha256sum-{ARCH}.txt"
INSTALLER = "install.sh"
ARTIFACT_NAMES = (INSTALLER, TARBALL, IMAGES, CHECKSUMS)

PAYLOAD = Path(__file__).resolve().parent / "payload"
SOURCE_ROOT = Path(__file__).resolve().parents[3] / "src"
BUNDLED_MODULES = (
    "rke2ha/errors.py",
    "rke2ha/lb/proxyproto.py",
    "rke2ha/lab/ingress_model.py",
    "rke2ha/lab/ingress_config.py",
    "rke2ha/lab/node_states.py",
    "rke2ha/lab/node_app.py",
    "rke2ha/lab/proxy_listener.py",
)
VERSION_MARK = "@RKE2_VERSION@"

# Fixed, so a rebuild gives the same bytes and sums.
_MTIME = 1_700_000_000


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _members(version: str) -> list[tuple[str, bytes, int]]:
    server = (PAYLOAD / "rke2.py").read_text()
    if VERSION_MARK not in server:
        raise RuntimeError(f"{PAYLOAD / 'rke2.py'} lost its {VERSION_MARK} mark")
    return [
        ("bin/rke2", server.replace(VERSION_MARK, version).encode(), 0o755),
        ("bin/rke2-killall.sh", (PAYLOAD / "rke2-killall.sh").read_bytes(), 0o755),
        ("bin/rke2-uninstall.sh", (PAYLOAD / "rke2-uninstall.sh").read_bytes(), 0o755),
        (
            "lib/systemd/system/rke2-server.service",
            (PAYLOAD / "rke2-server.service").read_bytes(),
            0o644,
        ),
        ("share/rke2/LICENSE.txt", b"Test stand-in for RKE2; not RKE2.\n", 0o644),
        ("share/rke2/standin/standin_ingress.py", (PAYLOAD / "ingress.py").read_bytes(), 0o644),
        *_bundled_emulator(),
    ]


def _bundled_emulator() -> list[tuple[str, bytes, int]]:
    """rke2ha's lab ingress emulator, stdlib-only modules, as a package the stand-in imports
    (empty package __init__ files: the real ones may import more than the machine has)."""
    members = [
        (f"share/rke2/standin/{package}/__init__.py", b"", 0o644)
        for package in ("rke2ha", "rke2ha/lab", "rke2ha/lb")
    ]
    for module in BUNDLED_MODULES:
        source = SOURCE_ROOT / module
        members.append((f"share/rke2/standin/{module}", source.read_bytes(), 0o644))
    return members


def _tarball(version: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        directories: set[str] = set()
        for name, data, mode in _members(version):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, _MTIME
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=_MTIME) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _images(version: str) -> bytes:
    # Starts with the zstd frame magic so a glance at it looks like what its name says.
    filler = hashlib.sha256(f"stand-in images {version}".encode()).digest() * 64
    return b"\x28\xb5\x2f\xfd" + filler


def build_artifacts(dest: Path, version: str = DEFAULT_VERSION) -> Path:
    """Write the four air-gap artifacts for `version` into `dest` (created); returns `dest`."""
    if not version.startswith("v") or "+rke2r" not in version:
        raise ValueError(f"version {version!r} is not an RKE2 release name like {DEFAULT_VERSION}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / TARBALL).write_bytes(_tarball(version))
    (dest / IMAGES).write_bytes(_images(version))
    sums = "".join(f"{sha256_file(dest / name)}  {name}\n" for name in (IMAGES, TARBALL))
    (dest / CHECKSUMS).write_text(sums)
    installer = dest / INSTALLER
    installer.write_bytes((PAYLOAD / "install.sh").read_bytes())
    installer.chmod(0o755)
    return dest


def build_mirror(root: Path, versions: tuple[str, ...] = (DEFAULT_VERSION,)) -> Path:
    """A release mirror for the stand-in's online mode: `root/<version>/` per version, the
    layout of GitHub's releases/download/<version>/. Point RKE2_STANDIN_MIRROR at `root`."""
    for version in versions:
        build_artifacts(root / version, version)
    return root
