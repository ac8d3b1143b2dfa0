"""A secret planned in memory is written once, 0600, and never replaces one that appeared."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rke2ha.errors import InvalidError
from rke2ha.secretfiles import PlannedSecret, create_secret


def test_a_planned_secret_is_written_by_keep_only(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token"
    planned = PlannedSecret(path)
    assert planned.missing and not path.exists()  # planning wrote nothing
    planned.keep()
    assert path.read_text() == planned.value + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temporary file left


def test_a_file_that_appeared_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token"
    planned = PlannedSecret(path)
    path.write_text("made-by-another-run\n")
    path.chmod(0o600)
    with pytest.raises(InvalidError, match="made by someone else") as refused:
        planned.keep()
    assert "made-by-another-run" not in str(refused.value)
    assert planned.value not in str(refused.value)
    assert path.read_text() == "made-by-another-run\n"


def test_the_same_value_appearing_meanwhile_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "token"
    planned = PlannedSecret(path)
    path.write_text(planned.value + "\n")
    path.chmod(0o600)
    planned.keep()
    assert not planned.missing


def test_create_secret_refuses_to_replace(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert create_secret(path, b"first\n")
    assert not create_secret(path, b"second\n")
    assert path.read_text() == "first\n"


def test_keep_announces_the_new_file_once_never_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    planned = PlannedSecret(path, what="RKE2 token")
    planned.keep()
    planned.keep()
    out, err = capsys.readouterr()
    assert out == "" and err == f"rke2ha: created RKE2 token {path} (0600)\n"
    assert planned.value not in err
