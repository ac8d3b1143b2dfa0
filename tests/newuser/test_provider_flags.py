"""Flags of `up`/`down` that one provider reads are refused for the others (exit 2) before
anything is read, asked or changed: `up --detach` on real hosts must not start applying."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.newuser.conftest import Runner


@pytest.mark.parametrize(
    ("spec", "command", "flag", "provider"),
    [
        ("existing-l4.yaml", ["up", "--yes"], ["--detach"], "lab"),
        ("existing-l4.yaml", ["up", "--yes"], ["--port-offset", "5"], "lab"),
        ("existing-l4.yaml", ["up", "--yes"], ["--replace"], "lab"),
        ("existing-l4.yaml", ["down", "--yes"], ["--replace"], "lab"),
        ("existing-l4.yaml", ["up", "--yes"], ["--adopt-dns"], "aws"),
        ("lab.yaml", ["up"], ["--adopt-dns"], "aws"),
        ("lab.yaml", ["up"], ["--merge-kubeconfig"], "existing"),
        ("lab.yaml", ["down"], ["--uninstall-rke2"], "existing"),
        ("aws.yaml", ["up", "--yes"], ["--detach"], "lab"),
    ],
)
def test_a_flag_of_another_provider_exits_2(
    rke2ha: Runner, scratch: Path, spec: str, command: list[str], flag: list[str], provider: str
) -> None:
    result = rke2ha(*command, "-f", spec, *flag)
    assert result.code == 2, result.text
    spec_provider = "existing" if spec.startswith("existing") else spec.removesuffix(".yaml")
    assert (
        f"rke2ha {command[0]}: error: {flag[0]} is for provider {provider}; this spec has "
        f"provider {spec_provider}; leave {flag[0]} out"
    ) in result.err
    assert result.out == "" and not (scratch / ".rke2ha").exists()


def test_merge_kubeconfig_without_an_rke2_install_exits_2(rke2ha: Runner, scratch: Path) -> None:
    result = rke2ha("up", "-f", "existing-l4.yaml", "--yes", "--merge-kubeconfig")
    assert result.code == 2, result.text
    assert "--merge-kubeconfig needs rke2.install online or airgap" in result.err
    assert not (scratch / ".rke2ha").exists()
