"""Helpers for the render tests: spec files built from the examples in a tmp folder, a
test certificate, rendering into a folder whose layout points at the rendered files (so
`haproxy -c` / `nginx -t` check exactly what was rendered), and runners for the real tools.

Live tests use this area's loopback range 127.0.22.0/24 only."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES
from tests.support.certs import write_self_signed

from rke2ha.render import Layout, RenderResult, render_to_dir
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

TOOL_TIMEOUT = 30
TSIG_SECRET = base64.b64encode(b"rke2ha-render-test-tsig-secret!!").decode()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` updated by `extra`, recursing into mappings (None deletes a key)."""
    out = dict(base)
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def make_cert(directory: Path, hostname: str, *, ip: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for `hostname` (and `ip`) and its key (mode 0600).

    CA:TRUE, so a client given the certificate as its CA file verifies the server."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_self_signed(
        directory / f"{hostname}.crt", directory / f"{hostname}.key", hostname, ip=ip, ca=True
    )


@dataclass
class SpecFactory:
    """Writes spec files (examples + overrides) into a tmp folder and loads them."""

    root: Path

    def write(self, overrides: dict[str, Any], base: str = "existing-l4.yaml") -> Path:
        data = merge(yaml.safe_load((EXAMPLES / base).read_text()), overrides)
        secrets = self.root / "secrets"
        secrets.mkdir(exist_ok=True)
        tsig = secrets / "tsig.secret"
        if not tsig.exists():
            tsig.write_text(TSIG_SECRET + "\n")
            tsig.chmod(0o600)
        path = self.root / "spec.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def load(self, overrides: dict[str, Any], base: str = "existing-l4.yaml") -> Spec:
        return load_spec(self.write(overrides, base))

    def tls(self, hostname: str = "rancher.example.com") -> dict[str, Any]:
        """Overrides for layer 7 with a fresh certificate for `hostname`."""
        cert, key = make_cert(self.root / "tls", hostname)
        return {"load_balancer": {"layer": 7, "tls": {"cert": str(cert), "key": str(key)}}}

    def health_token(self, value: str = "test-health-token-0123456789abcdef") -> str:
        path = self.root / "secrets" / "health.token"
        path.parent.mkdir(exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return str(path)


def local_layout(out: Path, bind_host: str = "") -> Layout:
    """Install paths pointing into the render output (so tools find the rendered files)."""
    return Layout(
        haproxy_dir=str(out / "haproxy"),
        nginx_dir=str(out / "nginx"),
        bind_host=bind_host,
    )


def render(spec: Spec, out: Path, bind_host: str = "") -> RenderResult:
    return render_to_dir(spec, out, "spec.yaml", layout=local_layout(out, bind_host))


@dataclass
class ToolResult:
    code: int
    output: str


def run_tool(argv: list[str], env: dict[str, str] | None = None) -> ToolResult:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (make test installs it)")
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        env=dict(os.environ, **(env or {})),
    )
    return ToolResult(proc.returncode, proc.stdout + proc.stderr)


def haproxy_check(cfg: Path, env: dict[str, str] | None = None) -> ToolResult:
    return run_tool(["haproxy", "-c", "-f", str(cfg)], env)


def nginx_check(conf: Path) -> ToolResult:
    # Debian's module snippet loads `modules/...so` relative to the compiled-in prefix, so
    # no -p here; -e and -g keep the test's log and pid files in its own folder.
    work = conf.parent
    return run_tool(
        ["nginx", "-t", "-c", str(conf), "-e", str(work / "error.log"), "-g", f"pid {work}/t.pid;"]
    )


Runner = Callable[[list[str]], ToolResult]
