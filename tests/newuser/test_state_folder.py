"""Commands that only read, or stop before changing anything, leave no `.rke2ha/` folder;
the one that first needs it makes it 0700 (with its `secrets/` inside, 0700 as well)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from tests.newuser.conftest import Runner

SPEC = {
    "name": "rancher",
    "hostname": "rancher.example.com",
    "provider": "existing",
    "nodes": [{"name": f"node-{i}", "address": f"127.0.61.{10 + i}"} for i in (1, 2, 3)],
    "load_balancer": {"address": "127.0.61.10", "engine": "haproxy"},
    "dns": {"provider": "manual", "zone": "example.com"},
}


@pytest.fixture
def spec(scratch: Path) -> str:
    (scratch / "plain.yaml").write_text(yaml.safe_dump(SPEC))
    return "plain.yaml"


@pytest.mark.parametrize(
    ("command", "code"),
    [(["plan"], 0), (["plan", "--json"], 0), (["up"], 2), (["down", "--yes"], 0)],
)
def test_no_state_folder_from_reading_or_refusing(
    rke2ha: Runner, scratch: Path, spec: str, command: list[str], code: int
) -> None:
    result = rke2ha(*command, "-f", spec)
    assert result.code == code, result.text
    assert not (scratch / ".rke2ha").exists(), result.text


def test_render_makes_the_state_folder_private(rke2ha: Runner, scratch: Path, spec: str) -> None:
    assert rke2ha("render", "-f", spec, "-o", "out").code == 0
    for folder in (scratch / ".rke2ha", scratch / ".rke2ha" / "secrets"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
