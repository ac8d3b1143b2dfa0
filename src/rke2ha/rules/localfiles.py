"""The files on this machine the spec names, read before the rules run (rule `files`).

What `render`, `plan` and `up` would refuse when they read a file (a VRRP password
keepalived cannot use, a token file with two lines, air-gap artifacts without their sums,
an SSH key that is not there) is found here first, so `validate` reports it on the field
and `plan`/`up` stop before they start. Contents are read only to check their shape and
never appear in a message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rke2ha.rke2node.artifacts import check as check_artifacts
from rke2ha.spec import Spec

# keepalived.conf(5), vrrp_instance authentication: "auth_pass ... Only the first eight (8)
# characters are used"; a longer password only looks stronger than it is.
VRRP_PASS_MAX = 8


@dataclass(frozen=True)
class FileProblem:
    path: str  # spec path of the field
    message: str
    fix: str
    # "warning": usable as it is, but not what it looks like (a longer VRRP password).
    severity: str = "error"


def _private_text(path: Path, what: str) -> tuple[str | None, str | None]:
    """(text, None) of a private regular UTF-8 file, or (None, why not)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None, f"{what} {path} does not exist"
    except OSError as err:
        return None, f"{what} {path} cannot be read: {err.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return None, f"{what} {path} is not a regular file"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return None, (
            f"{what} {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            "rke2ha refuses to read such secret files"
        )
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError:
        return None, f"{what} {path} is not UTF-8 text"
    except OSError as err:
        return None, f"{what} {path} cannot be read: {err.strerror}"


def _vrrp(spec: Spec) -> Iterator[FileProblem]:
    vrrp = spec.load_balancer.vrrp
    if vrrp is None or spec.provider != "existing":
        return
    field = "load_balancer.vrrp.auth_file"
    path = spec.resolve(vrrp.auth_file)
    text, problem = _private_text(path, "VRRP password file")
    fix = (
        f"write a password of 1-{VRRP_PASS_MAX} characters without spaces, quotes, # or ! "
        f"to {path} (mode 0600)"
    )
    if problem is not None:
        fix = f"chmod 600 {path}" if "readable by others" in problem else fix
        yield FileProblem(field, problem, fix)
        return
    secret = (text or "").strip()
    if not secret:
        yield FileProblem(field, f"VRRP password file {path} is empty", fix)
    elif len(secret) > VRRP_PASS_MAX:
        yield FileProblem(
            field,
            f"the VRRP password in {path} is {len(secret)} characters; keepalived's PASS "
            f"authentication uses only the first {VRRP_PASS_MAX}, so the rest protects nothing",
            f"write a password of at most {VRRP_PASS_MAX} characters",
            # keepalived (and rke2ha's render) use the first 8: both hosts still agree.
            severity="warning",
        )
    elif any(char.isspace() or char in "\"#!'" for char in secret):
        yield FileProblem(field, f"the VRRP password in {path} holds a space, quote, # or !", fix)


def _token(spec: Spec) -> Iterator[FileProblem]:
    # A missing token file is made by `up` (or `render`): only one that exists is checked.
    path = spec.rke2_token_file
    if spec.provider == "lab":
        return
    try:
        path.stat()
    except OSError:
        # Missing: made later. Unreachable (a folder of another user): the command that
        # makes or reads it says so, as a usage error naming the file.
        return
    text, problem = _private_text(path, "RKE2 token file")
    fix = f"keep the cluster token alone on one line in {path} (mode 0600)"
    if problem is not None:
        fix = f"chmod 600 {path}" if "readable by others" in problem else fix
    elif not (text or "").strip():
        problem = f"RKE2 token file {path} is empty"
    elif len((text or "").strip().splitlines()) > 1:
        problem = (
            f"RKE2 token file {path} holds more than one line; config.yaml would get all of "
            "them as the token"
        )
    if problem is not None:
        yield FileProblem("rke2.token_file", problem, fix)


def _airgap(spec: Spec) -> Iterator[FileProblem]:
    airgap = spec.rke2.airgap
    if airgap is None or spec.rke2.install != "airgap" or spec.provider != "existing":
        return
    folder = spec.resolve(airgap.artifacts)
    if not folder.is_dir():
        yield FileProblem(
            "rke2.airgap.artifacts",
            f"the air-gap artifacts folder {folder} does not exist",
            "download the files of rke2.version from the RKE2 releases page into it",
        )
        return
    _, problem = check_artifacts(folder)
    if problem is not None:
        what, fix = problem
        yield FileProblem("rke2.airgap.artifacts", f"{folder}: {what}", fix)


def _identity_files(spec: Spec) -> Iterator[tuple[str, Path]]:
    if spec.ssh is None or spec.provider != "existing":
        return
    if spec.ssh.identity_file is not None:
        yield "ssh.identity_file", spec.ssh.identity_file
    for index, node in enumerate(spec.nodes):
        if node.ssh is not None and node.ssh.identity_file is not None:
            yield f"nodes[{index}].ssh.identity_file", node.ssh.identity_file
    for index, host in enumerate(spec.load_balancer.hosts):
        if host.ssh is not None and host.ssh.identity_file is not None:
            yield f"load_balancer.hosts[{index}].ssh.identity_file", host.ssh.identity_file


def _ssh(spec: Spec) -> Iterator[FileProblem]:
    for field, given in _identity_files(spec):
        path = spec.resolve(given.expanduser())
        if not path.is_file():
            yield FileProblem(
                field,
                f"SSH key {path} does not exist; rke2ha could not log in to the machines",
                f"point {field} at your private key, or generate one with ssh-keygen",
            )
        elif not os.access(path, os.R_OK):
            yield FileProblem(
                field, f"SSH key {path} cannot be read by this user", f"chmod 600 {path}"
            )


def file_problems(spec: Spec) -> tuple[FileProblem, ...]:
    """Every problem of a local file the spec names (read from disk)."""
    return (*_vrrp(spec), *_token(spec), *_airgap(spec), *_ssh(spec))
