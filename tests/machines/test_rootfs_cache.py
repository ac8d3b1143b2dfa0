"""The cached root filesystem under its build lock: a second pytest process waits for the one
building (or checking) it and then uses the finished tree instead of building its own."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.machines import Testbed
from tests.support.machines.rootfs import cache_dir, cache_key

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]

CHILD = """\
from tests.support.machines.rootfs import ensure_rootfs
tree = ensure_rootfs()
print(tree.path, tree.built)
"""


def test_a_second_process_waits_for_the_build_lock_then_reuses_the_tree(testbed: Testbed) -> None:
    assert testbed.rootfs is not None  # the fixture made sure the tree is cached
    with (cache_dir() / "build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        try:
            time.sleep(1.5)
            assert child.poll() is None  # waiting for the lock, not building alongside
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split() == [str(cache_dir() / f"rootfs-{cache_key()}"), "False"]
    assert testbed.rootfs.path == cache_dir() / f"rootfs-{cache_key()}"
    assert (testbed.rootfs.path / ".rke2ha-complete").exists()
