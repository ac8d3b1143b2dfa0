"""The new operator's harness: run `rke2ha` as a subprocess in a scratch folder outside the
repo, with the environment they would have, and a way to run it without the privileges that
bypass file permissions (permission errors cannot be seen as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NOBODY = 65534


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


Runner = Callable[..., Run]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A world-readable scratch folder (so an unprivileged user can enter it) with the
    examples copied in, as a new operator would start."""
    folder = Path(tempfile.mkdtemp(prefix="rke2ha-newuser-"))
    folder.chmod(0o755)
    for name in ("lab.yaml", "existing-l4.yaml", "existing-l7.yaml", "aws.yaml"):
        shutil.copy(EXAMPLES / name, folder / name)
    shutil.copytree(EXAMPLES / "secrets", folder / "secrets")
    shutil.copytree(EXAMPLES / "certs", folder / "certs")
    # A fresh git clone leaves these 0644; an operator keeps them 0600 (secretfiles refuses
    # others-readable secrets, which would hide what these tests look at).
    (folder / "secrets" / "tsig.secret").chmod(0o600)
    (folder / "certs" / "rancher.example.com.key").chmod(0o600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# What lets root ignore file modes (capabilities(7)): read and search anything, write
# anything, act as the owner of any file.
_PERMISSION_BYPASS = "-dac_override,-dac_read_search,-fowner"


def _unprivileged_prefix() -> list[str]:
    """As root: stay uid 0 but without the capabilities that bypass file modes, so modes
    apply as they do to any user. Not another uid: that user could not run this checkout's
    .venv when the clone sits under a folder only its owner may enter (`mktemp -d`)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    drop = _PERMISSION_BYPASS
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]


@pytest.fixture
def rke2ha(scratch: Path) -> Runner:
    """`rke2ha ARGS...` in `scratch`; env overrides merge into (or, with None, remove from)
    the current environment."""

    def run(
        *args: str,
        env: dict[str, str | None] | None = None,
        timeout: float = 60,
        unprivileged: bool = False,
    ) -> Run:
        environ = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
        for key, value in (env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        prefix = _unprivileged_prefix() if unprivileged else []
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "rke2ha", *args],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            stdin=subprocess.DEVNULL,
        )
        result = Run(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in result.text, result.text
        return result

    return run
