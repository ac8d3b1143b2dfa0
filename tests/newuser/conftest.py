"""The new operator's harness: run `rke2ha` as a subprocess in a scratch folder outside the
repo, with the environment they would have, and a way to run it as an unprivileged user
(permission errors cannot be seen as root)."""

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


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


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
