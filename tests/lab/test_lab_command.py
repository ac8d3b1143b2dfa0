"""`rke2ha lab node`: arguments, clear errors with the right exit codes, the port rule."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import REPO, CliResult
from tests.lab.conftest import OFFSET, lab_spec, write_spec

from rke2ha.errors import UsageError
from rke2ha.lab.node_setup import lab_ports, loopback_address, port_offset, setup_node
from rke2ha.lab.node_states import PortRole
from rke2ha.specfile import load_spec

ADDRESSES = ["127.0.40.41", "127.0.40.42", "127.0.40.43"]


def test_help_lists_the_node_subcommand(run_cli: Callable[..., CliResult]) -> None:
    result = run_cli("lab", "node", "--help")
    assert result.code == 0
    assert "--port-offset" in result.out and "SIGUSR1" in result.out


def test_unknown_node_is_a_usage_error(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    spec_file = write_spec(tmp_path, lab_spec(ADDRESSES))
    result = run_cli("lab", "node", "--name", "node-9", "-f", str(spec_file))
    assert result.code == 2
    assert "no node named 'node-9'" in result.err and "node-1, node-2, node-3" in result.err
    assert "Traceback" not in result.err


def test_non_loopback_node_address_is_refused(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    spec_file = write_spec(tmp_path, lab_spec(["10.0.1.11", *ADDRESSES[1:]]))
    result = run_cli("lab", "node", "--name", "node-1", "-f", str(spec_file), "--port-offset", "1")
    assert result.code == 2
    assert "10.0.1.11 is not a loopback address" in result.err


def test_other_providers_are_refused(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    spec = lab_spec(ADDRESSES, provider="existing")
    del spec["lab"]
    spec_file = write_spec(tmp_path, spec)
    result = run_cli("lab", "node", "--name", "node-1", "-f", str(spec_file))
    assert result.code == 2 and "provider: lab" in result.err


def test_bad_flags_exit_2(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    spec_file = write_spec(tmp_path, lab_spec(ADDRESSES))
    result = run_cli("lab", "node", "--name", "node-1", "-f", str(spec_file), "--state", "frozen")
    assert result.code == 2 and "invalid choice" in result.err
    huge = run_cli(
        "lab", "node", "--name", "node-1", "-f", str(spec_file), "--port-offset", "60000"
    )
    assert huge.code == 2 and "use an offset from 0 to 56190" in huge.err


def test_a_taken_port_is_reported_not_a_traceback(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    spec_file = write_spec(tmp_path, lab_spec(ADDRESSES))
    with socket.socket() as squatter:
        squatter.bind((ADDRESSES[0], 6443 + OFFSET))
        squatter.listen()
        result = run_cli(
            "lab", "node", "--name", "node-1", "-f", str(spec_file), "--port-offset", str(OFFSET)
        )
    assert result.code == 1
    assert f"cannot listen on {ADDRESSES[0]}:{6443 + OFFSET} (apiserver)" in result.err
    assert "Traceback" not in result.err


def test_the_full_cli_runs_a_node(tmp_path: Path) -> None:
    # `rke2ha lab node` (through cli.py) and `python -m rke2ha.commands.lab node` are
    # the same command; the fixture uses the latter, this checks the former end to end.
    spec_file = write_spec(tmp_path, lab_spec(ADDRESSES))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rke2ha", "lab", "node", "--name", "node-2"),
            *("-f", str(spec_file), "--port-offset", str(OFFSET)),
            *("--ca-dir", str(tmp_path / "pki")),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert '"event": "listening"' in line and '"address": "127.0.40.42"' in line
        assert (tmp_path / "pki" / "ca.crt").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_port_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(write_spec(tmp_path, lab_spec(ADDRESSES)))
    assert port_offset(spec, 123) == 123
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert port_offset(spec) == 0  # root: the real ports
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert port_offset(spec) == OFFSET  # otherwise the spec's lab.port_offset
    with pytest.raises(UsageError, match="need root"):
        port_offset(spec, 0)
    assert lab_ports(OFFSET)[PortRole.SUPERVISOR] == 9345 + OFFSET


def test_setup_describes_the_node(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, lab_spec(ADDRESSES)))
    setup = setup_node(spec, "node-3", offset=OFFSET)
    assert setup.address == "127.0.40.43"
    assert setup.profile.rancher_installed  # the lab tests the realistic case by default
    assert setup.profile.ca_pem == setup.pki.ca_cert.read_bytes()
    assert setup.profile.health_token == setup.health_token_file.read_text().strip()
    assert setup.profile.health_token not in repr(setup)
    with pytest.raises(UsageError, match="not an IP address"):
        loopback_address("n", "node.example.com")


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "ingress config not found"),
        ("kind: ConfigMap\n", 1, "kind must be HelmChartConfig"),
        ("kind: HelmChartConfig\nmetadata: {name: rke2-ingress-nginx}\nspec: 3\n", 1, "spec"),
    ],
)
def test_a_wrong_ingress_config_is_refused_before_anything_is_made(
    tmp_path: Path, run_cli: Callable[..., CliResult], content: str | None, code: int, message: str
) -> None:
    spec_file = write_spec(tmp_path, lab_spec(ADDRESSES))
    config = tmp_path / "ingress.yaml"
    if content is not None:
        config.write_text(content)
    result = run_cli(
        "lab", "node", "--name", "node-1", "-f", str(spec_file), "--ingress-config", str(config),
        "--port-offset", str(OFFSET),
    )  # fmt: skip
    assert result.code == code, result.err
    assert message in result.err and "Traceback" not in result.err
    assert not (tmp_path / ".rke2ha").exists()  # no lab material was made
