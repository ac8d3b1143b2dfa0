"""SSH keys of a test session: the client key every login user accepts, each machine's host
keys, and the known_hosts file naming them. All made with OpenSSH's ssh-keygen; private keys
are mode 0600."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST_KEY_TYPES = ("ed25519", "ecdsa")


def keygen(path: Path, kind: str, comment: str) -> Path:
    """A new key pair at `path` (private, 0600) and `path`.pub; returns the private key path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path


def fingerprint(public_key: Path) -> str:
    """`SHA256:...` of a public key file, as ssh prints it when asking about a host."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


@dataclass(frozen=True)
class HostKeys:
    """A machine's host key pairs, by type, kept on the host side of the harness."""

    directory: Path

    def private(self, kind: str) -> Path:
        return self.directory / f"ssh_host_{kind}_key"

    def public(self, kind: str) -> Path:
        return self.directory / f"ssh_host_{kind}_key.pub"

    def public_line(self, kind: str) -> str:
        """`ssh-ed25519 AAAA...` (type and key, no comment)."""
        return " ".join(self.public(kind).read_text().split()[:2])

    def fingerprint(self, kind: str = "ed25519") -> str:
        return fingerprint(self.public(kind))

    @classmethod
    def generate(cls, directory: Path, comment: str) -> HostKeys:
        for old in directory.glob("ssh_host_*"):
            old.unlink()
        keys = cls(directory)
        for kind in HOST_KEY_TYPES:
            keygen(keys.private(kind), kind, comment)
        return keys


def known_hosts_lines(host: str, keys: HostKeys, port: int = 22) -> list[str]:
    name = host if port == 22 else f"[{host}]:{port}"
    return [f"{name} {keys.public_line(kind)}" for kind in HOST_KEY_TYPES]
