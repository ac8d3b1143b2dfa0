"""`rke2ha check` input errors: one clear message, exit 2, never a traceback or a hang.

Flag errors run in-process through `rke2ha.cli.main` (the same code path, no interpreter
start-up per case); two cases run as real subprocesses the way a user does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import CliResult
from topology import lab_spec, write_spec

from rke2ha.cli import main


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "lab.yaml", lab_spec(23000))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--dns-server", "127.0.0.1:99999"], "--dns-server"),
        (["--token", "/nonexistent/token"], "not found"),
        (["--ca", "/nonexistent/ca.crt"], "--ca"),
        (["--port-offset", "-5"], "--port-offset"),
        (["--timeout", "0"], "--timeout"),
        (["--drill-node", "node-1"], "--drill"),
    ],
)
def test_bad_flags_exit_2_with_one_message(
    capsys: pytest.CaptureFixture[str], lab_file: Path, args: list[str], words: str
) -> None:
    try:
        code = main(["check", "-f", str(lab_file), *args])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err


def test_drill_outside_the_lab_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = lab_spec(0)
    del document["lab"]
    document.update(
        provider="existing",
        nodes=[{"name": f"n{i}", "address": f"127.0.60.{220 + i}"} for i in (1, 2, 3)],
        load_balancer={"address": "127.0.60.220"},
    )
    spec_file = write_spec(tmp_path / "existing.yaml", document)
    assert main(["check", "-f", str(spec_file), "--drill"]) == 2
    assert "provider: lab" in capsys.readouterr().err


def test_missing_spec_is_a_usage_error(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = run_cli("check", "-f", str(tmp_path / "nope.yaml"), timeout=60)
    assert result.code == 2 and "nope.yaml" in result.err and "Traceback" not in result.err


def test_nothing_running_fails_every_live_check_with_exit_1(
    run_cli: Callable[..., CliResult], lab_file: Path
) -> None:
    # Nothing listens on 127.0.60.x with offset 23000: every check fails (refused, DNS timeout).
    result = run_cli(
        "check", "-f", str(lab_file), "--port-offset", "23000", "--json", "--timeout", "1",
        timeout=60,
    )  # fmt: skip
    assert result.code == 1
    assert '"ok": false' in result.out and '"status": "pass"' not in result.out


def test_dns_server_name_is_resolved_never_a_crash(
    run_cli: Callable[..., CliResult], lab_file: Path
) -> None:
    result = run_cli(
        "check", "-f", str(lab_file), "--port-offset", "23000", "--json", "--timeout", "1",
        "--dns-server", "localhost:1",
    )  # fmt: skip
    assert result.code == 1 and "Traceback" not in result.err
    assert "crashed" not in result.out and "127.0.0.1:1" in result.out
    bad = run_cli("check", "-f", str(lab_file), "--dns-server", "bad..name")
    assert bad.code == 2 and "--dns-server 'bad..name': cannot resolve" in bad.err


def test_file_arguments_exit_2_when_unreadable_1_when_wrong(
    capsys: pytest.CaptureFixture[str], lab_file: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    shared = tmp_path / "shared.tok"
    shared.write_text("token\n")
    shared.chmod(0o644)
    folder = tmp_path / "folder"
    folder.mkdir()
    for args, code, words in (
        (["--ca", str(folder)], 2, "is a directory, not a certificate file"),
        (["--token", str(folder)], 2, "is a directory, not a --token file"),
        (["--ca", str(junk)], 1, "not a PEM certificate"),
        (["--token", str(shared)], 1, "readable by others"),
    ):
        assert main(["check", "-f", str(lab_file), *args]) == code, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
        assert err.startswith(f"rke2ha check: error: {args[0]} ") or args[0] == "--token"
