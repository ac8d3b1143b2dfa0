"""`rke2ha completion bash|zsh`: the scripts load in the real shells and complete what the
parser has (subcommands, flags, choices)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rke2ha.cli import build_parser
from rke2ha.commands.common import FILE_COMPLETION

BIN = str(Path(sys.executable).parent)  # where the venv put the `rke2ha` script


def _shell(shell: str, script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        [shell, "-f" if shell == "zsh" else "--norc", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def _commands() -> list[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no subcommands")


def _bash_complete(*words: str, cwd: Path | None = None) -> list[str]:
    """What bash offers for the last of `words` (as if TAB was pressed after them)."""
    quoted = " ".join(f"'{word}'" for word in words)
    script = (
        "source <(rke2ha completion bash) || exit 9\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        f"_shtab_rke2ha rke2ha '{words[-1]}' '{words[-2]}'\n"
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = _shell("bash", script, cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_script_loads_and_registers_rke2ha():
    result = _shell("bash", "source <(rke2ha completion bash); complete -p rke2ha")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "complete -o bashdefault -F _shtab_rke2ha rke2ha"


def test_bash_completes_every_subcommand_of_the_parser():
    commands = _commands()
    assert {"init", "completion", "validate", "lb"} <= set(commands)
    assert sorted(_bash_complete("rke2ha", "")) == commands
    assert _bash_complete("rke2ha", "va") == ["validate"]


def test_bash_completes_flags_and_choices():
    assert sorted(_bash_complete("rke2ha", "init", "--provider", "")) == ["aws", "existing", "lab"]
    assert sorted(_bash_complete("rke2ha", "lb", "serve", "--l")) == ["--layer", "--listen"]
    assert sorted(_bash_complete("rke2ha", "completion", "")) == ["bash", "zsh"]


def test_bash_completes_file_names_after_f(tmp_path):
    (tmp_path / "lab.yaml").write_text("")
    (tmp_path / "other").write_text("")
    assert _bash_complete("rke2ha", "validate", "-f", "la", cwd=tmp_path) == ["lab.yaml"]


def test_file_completion_is_shtabs():
    shtab = pytest.importorskip("shtab")
    assert {shell: shtab.FILE[shell] for shell in FILE_COMPLETION} == FILE_COMPLETION


def test_unknown_shell_is_a_one_line_usage_error(run_cli):
    result = run_cli("completion", "fish")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "invalid choice: 'fish' (choose from 'bash', 'zsh')" in result.err


zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")


@zsh
def test_zsh_script_registers_after_compinit(tmp_path):
    script = (
        f"autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump || exit 9\n"
        'eval "$(rke2ha completion zsh)" || exit 8\n'
        'print -r -- "$_comps[rke2ha]"\n'
        "functions _shtab_rke2ha_commands"
    )
    result = _shell("zsh", script)
    assert result.returncode == 0, result.stderr
    first, _, body = result.stdout.partition("\n")
    assert first == "_shtab_rke2ha"
    for command in _commands():
        assert f"{command}:" in body, command


@zsh
def test_zsh_script_autoloads_from_fpath(tmp_path, run_cli):
    result = run_cli("completion", "zsh")
    assert result.code == 0
    (tmp_path / "_rke2ha").write_text(result.out)
    script = (
        f"fpath=({tmp_path} $fpath)\n"
        f"autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump || exit 9\n"
        'print -r -- "$_comps[rke2ha]"'
    )
    loaded = _shell("zsh", script)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "_rke2ha"
