"""`rke2ha render` into a new folder, onto a file, and where the user may not write."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.newuser.conftest import NOBODY, Runner


def test_into_a_new_folder(rke2ha: Runner, scratch: Path) -> None:
    result = rke2ha("render", "-f", "existing-l4.yaml", "-o", "out/new", "--json")
    assert result.code == 0, result.text
    document = json.loads(result.out)
    assert "out/new/haproxy/haproxy.cfg" in document["files"]
    assert (scratch / "out/new/haproxy/haproxy.cfg").is_file()


def test_onto_an_existing_file(rke2ha: Runner, scratch: Path) -> None:
    (scratch / "afile").write_text("keep me\n")
    result = rke2ha("render", "-f", "existing-l4.yaml", "-o", "afile")
    assert result.code == 2
    assert "rke2ha render: error: afile: exists and is not a folder; pass another -o DIR" in (
        result.err
    )
    assert (scratch / "afile").read_text() == "keep me\n"


def test_into_a_read_only_folder(rke2ha: Runner, scratch: Path) -> None:
    (scratch / "ro").mkdir(mode=0o555)
    result = rke2ha("render", "-f", "existing-l4.yaml", "-o", "ro/x", unprivileged=True)
    assert result.code == 2
    assert "ro/x/.rke2ha-render.json: cannot write: Permission denied" in result.err
    assert not (scratch / "ro/x").exists()
    assert "pass -o a folder you can write" in result.err


def test_secret_folder_the_user_cannot_reach(rke2ha: Runner, scratch: Path) -> None:
    # Someone else rendered first: the RKE2 token folder is theirs, mode 0700.
    assert rke2ha("render", "-f", "existing-l4.yaml", "-o", "first").code == 0
    if os.geteuid() == 0:
        secrets = scratch / ".rke2ha" / "secrets"  # mode 0700
        for path in [secrets, *secrets.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
    else:
        (scratch / ".rke2ha").chmod(0o000)
    result = rke2ha("render", "-f", "existing-l4.yaml", "-o", "second", unprivileged=True)
    if os.geteuid() != 0:
        (scratch / ".rke2ha").chmod(0o700)
    assert result.code == 2
    assert "rancher-rke2-token: cannot reach or create the secret file" in result.err
    assert "Permission denied" in result.err
    shutil.rmtree(scratch / "first")
