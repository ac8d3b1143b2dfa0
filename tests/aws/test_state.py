"""The state file (atomic, serial, pending entries) and its lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rke2ha.errors import InvalidError
from rke2ha.state import ResourceEntry, StateLock, StateStore


def test_save_load_serial_and_backup(tmp_path: Path) -> None:
    store = StateStore(tmp_path / ".rke2ha", "rancher")
    assert store.load() is None
    state = store.load_or_new("aws")
    state.resources["instance.node-1"] = ResourceEntry("instance", None, "pending")
    store.save(state)
    state.resources["instance.node-1"] = ResourceEntry("instance", "i-1", "created")
    store.save(state)
    loaded = store.load()
    assert loaded is not None
    assert loaded.serial == 2 and loaded.owner == state.owner
    assert loaded.resources["instance.node-1"].id == "i-1"
    document = json.loads(store.path.read_text())
    assert document["version"] == 1
    backup = json.loads(store.path.with_name("rancher.state.json.backup").read_text())
    assert backup["serial"] == 1
    assert backup["resources"]["instance.node-1"]["status"] == "pending"
    assert [p.name for p in store.state_dir.iterdir() if p.name.startswith(".")] == []


def test_pending_entries_are_listed(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "rancher")
    state = store.load_or_new("aws")
    state.resources["b"] = ResourceEntry("k", None, "pending")
    state.resources["a"] = ResourceEntry("k", "x", "created")
    assert state.pending == ["b"]


def test_damaged_state_is_a_clear_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "rancher")
    store.path.write_text("{not json")
    with pytest.raises(InvalidError, match="damaged"):
        store.load()
    store.path.write_text(json.dumps({"version": 99}))
    with pytest.raises(InvalidError, match="state version 99"):
        store.load()


def test_lock_held_by_a_live_process_blocks_and_force_unlock_breaks_it(tmp_path: Path) -> None:
    holder = StateLock(tmp_path, "rancher")
    with holder.acquire("up"):
        other = StateLock(tmp_path, "rancher")
        with pytest.raises(InvalidError) as err, other.acquire("plan"):
            pass
        message = str(err.value)
        assert f"(pid {os.getpid()}) for `up`" in message and "--force-unlock" in message
        forced = StateLock(tmp_path, "rancher")
        with forced.acquire("down", force_unlock=True) as info:
            assert info.operation == "down"
            assert json.loads(forced.path.read_text())["operation"] == "down"
        assert "removed the lock held by" in forced.notices[0]
    assert not holder.path.exists()


def test_lock_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock = StateLock(tmp_path, "rancher")
    with lock.acquire("up"):
        pass
    import socket

    lock.path.write_text(
        json.dumps(
            {
                "who": "x",
                "host": socket.gethostname(),
                "pid": int(dead.stdout),
                "operation": "up",
                "when": "then",
            }
        )
    )
    with lock.acquire("plan"):
        pass
    assert "stale lock" in lock.notices[0]
