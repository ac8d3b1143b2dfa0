"""argparse usage errors: one line on stderr, exit 2, naming the subcommand (and, for a
mistyped flag, the real one). In-process through `rke2ha.cli.main`, plus the real command
in a subprocess for the case a new user hit."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rke2ha.cli import build_parser, main
from rke2ha.cli_errors import UsageErrorParser

REPO = Path(__file__).resolve().parents[2]
# No --listen: should a bad flag ever parse, `lb serve` fails at once ("--backend needs
# --listen") instead of serving, and the test fails instead of hanging.
ADHOC = ["lb", "serve", "--backend", "127.0.0.1:9"]


def _usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one stderr line of `rke2ha ARGS` (which must exit 2 and print nothing else)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert len(err.splitlines()) == 1, err
    return err.rstrip("\n")


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_subcommand_parser_inherits_the_one_line_class() -> None:
    parsers = dict(_parsers(build_parser()))
    assert {"rke2ha", "rke2ha lb", "rke2ha lb serve", "rke2ha validate", "rke2ha dns serve"} <= (
        parsers.keys()
    )
    plain = [prog for prog, parser in parsers.items() if not isinstance(parser, UsageErrorParser)]
    assert plain == []


def test_unknown_flag_on_lb_serve_names_it_and_suggests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _usage_error(capsys, "lb", "serve", "--backends", "X")
    assert line == (
        "rke2ha lb serve: error: unrecognized arguments: --backends X; "
        "did you mean --backend? (see 'rke2ha lb serve --help')"
    )


def test_several_unknown_flags_each_get_their_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _usage_error(capsys, *ADHOC, "--helth", "tcp", "--verbse", "--bogus")
    assert line == (
        "rke2ha lb serve: error: unrecognized arguments: --helth tcp --verbse --bogus; "
        "did you mean --health (for --helth), --verbose (for --verbse)? "
        "(see 'rke2ha lb serve --help')"
    )


def test_hidden_option_is_never_suggested(capsys: pytest.CaptureFixture[str]) -> None:
    # --relay exists but is help=SUPPRESS: a typo of it must not reveal it. (Not "--rela":
    # argparse takes that as an abbreviation of --relay.)
    line = _usage_error(capsys, *ADHOC, "--rlay", "copy")
    assert line.startswith("rke2ha lb serve: error: unrecognized arguments: --rlay copy")
    assert "--relay" not in line


def test_unknown_flag_on_validate(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "validate", "--bogus")
    assert line == (
        "rke2ha validate: error: unrecognized arguments: --bogus (see 'rke2ha validate --help')"
    )


def test_flag_with_value_is_matched_by_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "validate", "--jsn=yes")
    assert line == (
        "rke2ha validate: error: unrecognized arguments: --jsn=yes; did you mean --json? "
        "(see 'rke2ha validate --help')"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        # Given before the command: the top-level parser's, not validate's.
        (["--bogus", "validate"], "rke2ha: error: unrecognized arguments: --bogus"),
        (
            ["--verison"],
            "rke2ha: error: unrecognized arguments: --verison; did you mean --version?",
        ),
        # Given to `lb`, before its subcommand.
        (["lb", "--bogus", "serve"], "rke2ha lb: error: unrecognized arguments: --bogus"),
        (["dns", "serve", "--bogus"], "rke2ha dns serve: error: unrecognized arguments: --bogus"),
    ],
)
def test_unknown_arguments_are_reported_where_they_were_given(
    capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    prog = line.split(": error: ")[0]
    assert _usage_error(capsys, *args) == f"{line} (see '{prog} --help')"


def test_bad_choice(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "lb", "serve", "--layer", "3")
    assert line == (
        "rke2ha lb serve: error: argument --layer: invalid choice: 3 (choose from 4, 7) "
        "(see 'rke2ha lb serve --help')"
    )


def test_bad_type_keeps_the_type_functions_message(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "lb", "serve", "--interval", "2x")
    assert line == (
        "rke2ha lb serve: error: argument --interval: '2x' is not a duration; "
        "write it as 500ms, 1s, 2m or 1h (see 'rke2ha lb serve --help')"
    )


def test_bad_number(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "lb", "serve", "--workers", "0")
    assert line == (
        "rke2ha lb serve: error: argument --workers: '0' is not a whole number >= 1 "
        "(see 'rke2ha lb serve --help')"
    )


def test_missing_option_value(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "lb", "serve", "--listen")
    assert line == (
        "rke2ha lb serve: error: argument --listen: expected one argument "
        "(see 'rke2ha lb serve --help')"
    )


def test_missing_required_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "dns")
    assert line == (
        "rke2ha dns: error: the following arguments are required: SUBCOMMAND "
        "(see 'rke2ha dns --help')"
    )


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "validat")
    assert line.startswith("rke2ha: error: argument COMMAND: invalid choice: 'validat' ")
    assert line.endswith(" (see 'rke2ha --help')")


def test_action_calling_parser_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # No --backend: should the action ever let it through, serving fails at once.
    line = _usage_error(capsys, "lb", "serve", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2")
    assert line == (
        "rke2ha lb serve: error: --listen given twice; ad hoc mode serves one frontend "
        "(see 'rke2ha lb serve --help')"
    )


def test_subcommand_help_is_full_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lb", "serve", "--help"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: rke2ha lb serve [-h]")
    assert "\noptions:\n" in out
    assert "--backend HOST:PORT" in out
    assert "--relay" not in out  # still hidden


def test_no_command_prints_help_to_stderr_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: rke2ha [-h] [--version] COMMAND ...")
    assert "validate" in err and "lb" in err


def test_version_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("rke2ha ") and len(out.splitlines()) == 1
    assert err == ""


MISTYPED = ["lb", "serve", "--listen", "127.0.0.1:1", "--backends", "X"]


def test_real_command_mistyped_flag() -> None:
    """As the new user ran it: `python -m rke2ha`, nothing but the one line."""
    proc = subprocess.run(
        [sys.executable, "-m", "rke2ha", *MISTYPED],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,  # a regression that serves 127.0.0.1:1 is killed, not hung on
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "rke2ha lb serve: error: unrecognized arguments: --backends X; did you mean --backend? "
        "(see 'rke2ha lb serve --help')\n"
    )
