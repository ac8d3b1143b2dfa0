"""Rancher values.yaml and install.sh: right TLS mode, bash -n clean, password never inlined.

One test runs install.sh for real with `helm` and `kubectl` replaced by scripts that log
their arguments: it checks the script's own logic (password read at run time, handed over
in a private file that is removed afterwards), not Helm's.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import yaml
from tests.render.helpers import SpecFactory, render, run_tool


def test_layer4_values_and_cert_manager(specs: SpecFactory, tmp_path: Path) -> None:
    spec = specs.load({"rancher": {"replicas": 3, "version": "2.10.1"}})
    out = tmp_path / "out"
    render(spec, out)
    values = yaml.safe_load((out / "rancher/values.yaml").read_text())
    assert values["hostname"] == "rancher.example.com"
    assert values["replicas"] == 3
    assert values["ingress"]["tls"]["source"] == "rancher"
    assert "tls" not in values and "bootstrapPassword" not in values
    script = out / "rancher/install.sh"
    assert run_tool(["bash", "-n", str(script)]).code == 0
    text = script.read_text()
    assert "set -euo pipefail" in text
    assert "jetstack/cert-manager" in text and "--version v1.16.2" in text
    assert "--version 2.10.1" in text
    password = spec.bootstrap_password_file.read_text().strip()
    assert stat.S_IMODE(spec.bootstrap_password_file.stat().st_mode) == 0o600
    assert password not in text and password not in (out / "rancher/values.yaml").read_text()


def test_layer7_tls_external_without_cert_manager(specs: SpecFactory, tmp_path: Path) -> None:
    out = tmp_path / "out"
    render(specs.load(specs.tls()), out)
    values = yaml.safe_load((out / "rancher/values.yaml").read_text())
    assert values["tls"] == "external"
    assert "tls" not in values["ingress"]
    text = (out / "rancher/install.sh").read_text()
    assert run_tool(["bash", "-n", str(out / "rancher/install.sh")]).code == 0
    assert "cert-manager" not in text


def test_letsencrypt_values(specs: SpecFactory, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = specs.load(
        {"rancher": {"tls_source": "letsEncrypt", "letsencrypt_email": "ops@example.com"}}
    )
    render(spec, out)
    values = yaml.safe_load((out / "rancher/values.yaml").read_text())
    assert values["ingress"]["tls"]["source"] == "letsEncrypt"
    assert values["letsEncrypt"] == {"ingress": {"class": "nginx"}, "email": "ops@example.com"}
    assert "jetstack/cert-manager" in (out / "rancher/install.sh").read_text()


STUB = """#!/usr/bin/env bash
# test stand-in: log argv and copies of any --values files, then succeed
echo "$(basename "$0") $*" >> "$STUB_LOG"
prev=""
for arg in "$@"; do
  if [ "$prev" = "--values" ]; then cat "$arg" >> "$STUB_LOG"; ls -l "$arg" >> "$STUB_LOG"; fi
  prev="$arg"
done
"""


def test_install_sh_reads_password_at_run_time(specs: SpecFactory, tmp_path: Path) -> None:
    password_file = tmp_path / "pass word" / "bootstrap"  # a space: quoting must hold
    spec = specs.load({"rancher": {"bootstrap_password_file": str(password_file)}})
    out = tmp_path / "out"
    render(spec, out)
    password = "it's-a-secret"  # a quote: YAML escaping must hold
    password_file.write_text(password + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("helm", "kubectl"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "stub.log"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_LOG=str(log))
    proc = subprocess.run(
        ["bash", str(out / "rancher/install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text()
    rancher_call = next(line for line in calls.splitlines() if "install rancher" in line)
    assert password not in rancher_call  # never on a command line
    assert f"--values {out}/rancher/values.yaml" in rancher_call
    assert "bootstrapPassword: 'it''s-a-secret'" in calls
    assert yaml.safe_load("bootstrapPassword: 'it''s-a-secret'")["bootstrapPassword"] == password
    assert "-rw-------" in calls  # the temporary values file was private
    temp_file = rancher_call.split("--values ")[2].split()[0]
    assert not Path(temp_file).exists()  # and removed afterwards


def test_install_sh_refuses_without_password_file(specs: SpecFactory, tmp_path: Path) -> None:
    spec = specs.load({})
    out = tmp_path / "out"
    render(spec, out)
    env = dict(os.environ, BOOTSTRAP_PASSWORD_FILE=str(tmp_path / "missing"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("helm", "kubectl"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    proc = subprocess.run(
        ["bash", str(out / "rancher/install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "cannot read the bootstrap password file" in proc.stderr
