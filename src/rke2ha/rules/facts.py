"""What the rules need to know about the world beyond the spec, read once before they run.

Rules are pure functions of (Spec, Facts): all file access happens here, in
`gather_facts`, so every rule can be unit-tested with a hand-made `Facts` and the clock
is a value (`now`), not a call.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rke2ha.dns.tsigkey import decode_secret
from rke2ha.errors import InvalidError, Rke2haError
from rke2ha.lab.material import default_pki_dir
from rke2ha.rules.localfiles import FileProblem, file_problems
from rke2ha.spec import Spec
from rke2ha.tlsfiles import TlsMaterial, load_tls_files


@dataclass(frozen=True)
class FileFact:
    """What a file named in the spec looks like on disk (never its content)."""

    path: Path
    exists: bool
    is_file: bool = False
    mode: int | None = None  # permission bits, e.g. 0o600

    @property
    def private(self) -> bool:
        """Only the owner may read or write it (mode 0600 or stricter)."""
        return self.mode is not None and self.mode & 0o077 == 0


@dataclass(frozen=True)
class TlsFact:
    """The layer-7 certificate and key: loaded, or the reason they could not be."""

    material: TlsMaterial | None
    problem: str | None = None
    # `provider: lab` pointing at the lab's own certificate before `up` has made it: the
    # lab issues it for the hostname, so its absence is not a fault of the spec.
    made_by_lab: bool = False


@dataclass(frozen=True)
class Facts:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    files: Mapping[Path, FileFact] = field(default_factory=dict)
    tls: TlsFact | None = None
    # TSIG secret files whose content is not a base64 secret: path -> the problem (the
    # content itself is never kept).
    bad_tsig_secrets: Mapping[Path, str] = field(default_factory=dict)
    local_files: tuple[FileProblem, ...] = ()  # rule `files`

    def file(self, path: Path) -> FileFact:
        """The fact for `path` (an absolute path from `Spec.resolve`); unknown -> missing."""
        return self.files.get(path, FileFact(path, exists=False))


def stat_file(path: Path) -> FileFact:
    try:
        info = path.stat()
    except OSError:
        return FileFact(path, exists=False)
    return FileFact(path, True, stat.S_ISREG(info.st_mode), stat.S_IMODE(info.st_mode))


def spec_files(spec: Spec) -> list[Path]:
    """Every file the spec names that rules look at, resolved against the spec's folder."""
    paths = []
    health_token = spec.health_token_file
    if health_token is not None:
        paths.append(health_token)
    if spec.dns.rfc2136 is not None:
        paths.append(spec.resolve(spec.dns.rfc2136.key_file))
    transfer_key = spec.dns.builtin.transfer_key
    if transfer_key is not None:
        paths.append(spec.resolve(transfer_key.key_file))
    if spec.load_balancer.tls is not None:
        paths += [
            spec.resolve(spec.load_balancer.tls.cert),
            spec.resolve(spec.load_balancer.tls.key),
        ]
    return paths


def _lab_makes(spec: Spec, cert: Path, key: Path) -> bool:
    """True for a lab spec whose layer-7 files are the lab's own, not made yet."""
    if spec.provider != "lab" or (cert.exists() and key.exists()):
        return False
    pki = default_pki_dir(spec).resolve()
    return cert.resolve().parent == pki and key.resolve().parent == pki


def tsig_secret_problem(path: Path) -> str | None:
    """Why the private file `path` does not hold a base64 TSIG secret; None when it does."""
    try:
        decode_secret(path.read_text(encoding="utf-8").strip(), path)
    except (OSError, UnicodeDecodeError):
        return "cannot be read as text"
    except InvalidError:
        return "is not base64"
    return None


def _bad_tsig_secrets(spec: Spec, files: Mapping[Path, FileFact]) -> dict[Path, str]:
    transfer_key = spec.dns.builtin.transfer_key
    if transfer_key is None:
        return {}
    path = spec.resolve(transfer_key.key_file)
    fact = files.get(path)
    if fact is None or not fact.is_file or not fact.private:
        return {}  # missing or readable by others: a finding of its own, content unread
    problem = tsig_secret_problem(path)
    return {} if problem is None else {path: problem}


def gather_facts(spec: Spec, now: datetime | None = None) -> Facts:
    """Read what the rules need: file modes, TSIG secrets' form and, at layer 7, the
    certificate and key."""
    files = {path: stat_file(path) for path in spec_files(spec)}
    secrets = _bad_tsig_secrets(spec, files)
    local = file_problems(spec)
    tls = None
    if spec.load_balancer.tls is not None:
        cert = spec.resolve(spec.load_balancer.tls.cert)
        key = spec.resolve(spec.load_balancer.tls.key)
        if _lab_makes(spec, cert, key):
            return Facts(
                now=now or datetime.now(UTC),
                files=files,
                tls=TlsFact(None, made_by_lab=True),
                bad_tsig_secrets=secrets,
                local_files=local,
            )
        try:
            tls = TlsFact(load_tls_files(cert, key))
        except Rke2haError as err:
            tls = TlsFact(None, str(err))
    return Facts(
        now=now or datetime.now(UTC),
        files=files,
        tls=tls,
        bad_tsig_secrets=secrets,
        local_files=local,
    )
