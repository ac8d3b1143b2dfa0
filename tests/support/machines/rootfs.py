"""The test machines' root filesystem: Debian bookworm made once with debootstrap, cached.

The cache lives outside the checkout (`/var/cache/rke2ha-test/rootfs-<key>`, or under
$RKE2HA_TEST_CACHE); the key hashes the package list and ROOTFS_VERSION, so a changed list or
setup makes a new tree. It is built under a lock (two pytest processes wait for one build) in
a temporary directory renamed into place at the end, so a half-built tree is never used.
Packages come from the Debian mirror this machine's apt already uses (read from
/etc/apt/sources.list.d/ and /etc/apt/sources.list at run time), or $RKE2HA_TEST_MIRROR."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"

# What every machine runs (systemd as PID 1, sshd, sudo) plus what pre-flight reads (ip,
# nft, ps, time sync) and what the next issues install onto the machines for real.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "python3",
    "sudo",
    "nftables",
    "procps",
    "systemd-timesyncd",
    "haproxy",
    "keepalived",
    "nginx-light",
    # nginx-light lacks the stream module that layer 4 needs (nginx on load_balancer.hosts).
    "libnginx-mod-stream",
    "etcd-server",
    # The RKE2 stand-in (tests/support/rke2_standin): its `rke2 server` reads YAML and makes
    # certificates; etcdctl lets tests read the real etcd membership independently of it.
    "etcd-client",
    "python3-cffi-backend",  # debootstrap cannot resolve the virtual cffi API packages
    "python3-cryptography",
    "python3-yaml",
)

# Bump when _configure changes what it writes, so the cached tree is rebuilt.
ROOTFS_VERSION = "2"

# Installed (for the next issues) but left off at boot: etcd would hold 2379/2380 and nginx
# port 80 on every machine, which is exactly what pre-flight looks for. The timers would
# wake apt, dpkg and fstrim at random moments of a test run on every machine.
DISABLED_UNITS = (
    "haproxy.service",
    "keepalived.service",
    "nginx.service",
    "etcd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)

# The two login users besides root: one with passwordless sudo, one whose sudo asks for a
# password (pre-flight's `sudo -n true` check must see it fail).
SUDO_USER = "rke2ha"
NOSUDO_USER = "nosudo"
# Only ever asked for by sudo inside the machines; sshd refuses passwords (see SSHD_CONFIG).
NOSUDO_PASSWORD = "nosudo-test-password"

SSHD_CONFIG = """\
# rke2ha test machine: host keys are written per machine by the harness; keys only.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

# Nothing answers DNS inside the test network: a resolver on loopback refuses at once
# instead of timing out against the host's resolver, which these namespaces cannot reach.
RESOLV_CONF = "# rke2ha test machine: no DNS server on the test network\nnameserver 127.0.0.1\n"

DEFAULT_CACHE = Path("/var/cache/rke2ha-test")


class RootfsError(RuntimeError):
    """The root filesystem could not be built (the message names the step and the fix)."""


@dataclass(frozen=True)
class Rootfs:
    path: Path
    built: bool  # False when the cached tree was reused
    seconds: float


def cache_dir() -> Path:
    return Path(os.environ.get("RKE2HA_TEST_CACHE", str(DEFAULT_CACHE)))


def cache_key(packages: tuple[str, ...] = PACKAGES) -> str:
    text = "\n".join([SUITE, ROOTFS_VERSION, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_debian_mirror(text: str, suite: str = SUITE) -> str | None:
    """The first Debian archive URI serving `suite` (main) in apt sources text, or None.

    Reads both formats: deb822 `.sources` stanzas and one-line `deb URI SUITE COMPONENTS`."""
    stanzas = re.split(r"\n\s*\n", text)
    for stanza in stanzas:
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        if (
            suite in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
        ):
            uris = fields.get("uris", "").split()
            if uris:
                return uris[0]
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # [options]
        if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
            return words[1]
    return None


def debian_mirror() -> str:
    """The mirror for debootstrap: $RKE2HA_TEST_MIRROR, else the one apt already uses."""
    if os.environ.get("RKE2HA_TEST_MIRROR"):
        return os.environ["RKE2HA_TEST_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    sources.append(Path("/etc/apt/sources.list"))
    for path in sources:
        with contextlib.suppress(OSError):
            found = parse_debian_mirror(path.read_text())
            if found:
                return found
    raise RootfsError(
        f"no Debian {SUITE} mirror in /etc/apt/sources.list(.d): "
        "set RKE2HA_TEST_MIRROR to one (e.g. the URI of a Debian archive)"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_rootfs(packages: tuple[str, ...] = PACKAGES, log: Path | None = None) -> Rootfs:
    """The cached tree for `packages`, built first when missing (minutes, once)."""
    started = time.monotonic()
    base = cache_dir()
    final = base / f"rootfs-{cache_key(packages)}"
    with _locked(base / "build.lock"):
        if (final / ".rke2ha-complete").exists():
            return Rootfs(final, built=False, seconds=time.monotonic() - started)
        if final.exists():  # renamed but unmarked cannot happen; anything else is junk
            shutil.rmtree(final)
        _remove_stale_builds(base)
        temp = base / f"build-{os.getpid()}-{final.name}"
        try:
            _debootstrap(temp, packages, log or base / "build.log")
            _configure(temp)
            (temp / ".rke2ha-complete").write_text(" ".join(sorted(packages)) + "\n")
            temp.rename(final)
        except BaseException:
            _unmount_below(temp)
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return Rootfs(final, built=True, seconds=time.monotonic() - started)


def _unmount_below(path: Path) -> None:
    """Lazily unmount whatever debootstrap left mounted inside `path` (proc, sys, dev)."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_stale_builds(base: Path) -> None:
    # Only called under the build lock, so no build-* directory belongs to a live build.
    for stale in base.glob("build-*"):
        _unmount_below(stale)
        shutil.rmtree(stale, ignore_errors=True)


def _debootstrap(target: Path, packages: tuple[str, ...], log: Path) -> None:
    debs = target.parent / "debs"  # kept: a changed package list downloads only what is new
    debs.mkdir(exist_ok=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--cache-dir={debs}",
        f"--include={','.join(packages)}",
        SUITE,
        str(target),
        debian_mirror(),
    ]
    with log.open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise RootfsError(f"debootstrap failed (exit {proc.returncode}), see {log}:\n{tail}")


def _chroot(root: Path, *argv: str, stdin: str | None = None) -> None:
    proc = subprocess.run(
        ["chroot", str(root), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    if proc.returncode != 0:
        raise RootfsError(f"in the new root, {' '.join(argv)} failed: {proc.stderr.strip()}")


def _configure(root: Path) -> None:
    """What every machine shares: users, sudo rules, sshd settings, no shared identity."""
    # Host keys and the machine id are per machine (the harness writes them before boot);
    # an empty machine-id makes systemd use the one the harness gives each machine.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    (root / "etc/ssh/sshd_config.d/rke2ha-test.conf").write_text(SSHD_CONFIG)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(RESOLV_CONF)
    _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER)
    _chroot(
        root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", NOSUDO_USER
    )
    _chroot(root, "chpasswd", stdin=f"{NOSUDO_USER}:{NOSUDO_PASSWORD}\n")
    sudoers = root / "etc/sudoers.d/rke2ha"
    sudoers.write_text(f"{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    _chroot(root, "visudo", "-c", "-q")
    _chroot(root, "systemctl", "disable", *DISABLED_UNITS)
    _chroot(root, "apt-get", "clean")
