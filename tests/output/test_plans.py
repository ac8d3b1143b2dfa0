"""Plans a person can review, and a state that knows which spec it belongs to.

Live: a lab on 127.0.152.0/24 (this module's own) brought up from one spec file while a
second spec file with the same name and folder (layer 7, like examples/lab-l7.yaml) asks
for the same lab; provider existing with HAProxy on 127.0.152.40 for a config file diff.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES
from tests.output.helpers import run

SUBNET = "127.0.152.0/24"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds real ports on 127.0.152.x")


@pytest.fixture
def two_specs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """lab.yaml (layer 4) and lab-l7.yaml (layer 7) from the examples, same name and folder."""
    files = []
    for name in ("lab.yaml", "lab-l7.yaml"):
        text = (EXAMPLES / name).read_text().replace("127.0.10.0/24", SUBNET)
        assert SUBNET in text
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    yield files[0], files[1]
    for spec_file in files:
        run("down", "-f", str(spec_file), cwd=tmp_path)


def test_another_spec_does_not_silently_take_over_the_lab(two_specs: tuple[Path, Path]) -> None:
    l4, l7 = two_specs
    folder = l4.parent
    up = run("up", "-f", str(l4), "--detach", cwd=folder, timeout=90)
    assert up.code == 0, up.out + up.err
    state = json.loads((folder / ".rke2ha" / "lab.state.json").read_text())
    assert state["spec"]["file"] == str(l4.resolve()) and len(state["spec"]["digest"]) == 16

    # The plan of the other spec says what would change, field by field.
    plan = run("plan", "-f", str(l7), cwd=folder)
    assert plan.code == 0, plan.err
    assert f"spec fields changed (running from {l4.resolve()}):" in plan.out
    assert "load_balancer.layer: 4 -> 7" in plan.out
    assert "load_balancer.tls.cert: None -> .rke2ha/lab/pki/ingress.crt" in plan.out

    # `up` of the other spec refuses and names both ways out; the running lab is untouched.
    refused = run("up", "-f", str(l7), "--detach", cwd=folder, timeout=60)
    assert refused.code == 1, refused.out + refused.err
    assert f"was started from {l4.resolve()}, not from {l7}" in refused.err
    # Commands as they run from here (`python -m rke2ha`, the spec relative to the folder).
    assert f" -m rke2ha down -f {l4.name}`" in refused.err and "--replace" in refused.err
    assert run("lab", "status", "-f", str(l4), cwd=folder).code == 0

    # Status and check of the other spec do not pass the running lab off as theirs.
    status = run("lab", "status", "-f", str(l7), cwd=folder)
    assert status.code == 1 and f"was started from {l4.resolve()}" in status.out
    assert "node-1" not in status.out and "curl" not in status.out
    check = run("check", "-f", str(l7), cwd=folder)
    assert check.code == 1 and check.out == "" and "was started from" in check.err

    # Asked to, it replaces the lab; now the first spec is the other one.
    replaced = run("up", "-f", str(l7), "--detach", "--replace", cwd=folder, timeout=90)
    assert replaced.code == 0, replaced.out + replaced.err
    assert "load_balancer.layer: 4 -> 7" in replaced.out  # what the restart was for
    status = run("lab", "status", "-f", str(l4), "--json", cwd=folder)
    assert status.code == 1
    assert json.loads(status.out)["started_from"] == str(l7.resolve())


def haproxy_spec(interval: str) -> dict[str, Any]:
    return {
        "name": "plans",
        "hostname": "rancher.plans.rke2ha.test",
        "provider": "existing",
        "ingress": "nginx",
        "nodes": [{"name": f"node-{i}", "address": f"127.0.152.{40 + i}"} for i in (1, 2, 3)],
        "load_balancer": {
            "engine": "haproxy",
            "address": "127.0.152.40",
            "admin": "127.0.152.40:8404",
            "max_connections": 2000,  # under the sandbox's open-file limit (see tests/existing)
            "health": {"interval": interval},
        },
        "dns": {"provider": "manual", "zone": "plans.rke2ha.test"},
    }


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_an_engine_config_change_shows_the_fields_and_the_config_lines(tmp_path: Path) -> None:
    spec_file = tmp_path / "rke2ha.yaml"
    spec_file.write_text(yaml.safe_dump(haproxy_spec("2s")))
    try:
        up = run("up", "-f", str(spec_file), "--yes", cwd=tmp_path, timeout=90)
        assert up.code == 0, up.out + up.err
        spec_file.write_text(yaml.safe_dump(haproxy_spec("3s")))
        plan = run("plan", "-f", str(spec_file), "--json", cwd=tmp_path)
        assert plan.code == 0, plan.err
        document = json.loads(plan.out)
        assert {
            "key": "load_balancer.health.interval",
            "before": 2.0,
            "after": 3.0,
        } in document["spec_changes"]
        diff = document["file_diffs"]["haproxy/haproxy.cfg"]
        removed = [line for line in diff.splitlines() if line.startswith("-") and "inter" in line]
        added = [line for line in diff.splitlines() if line.startswith("+") and "inter" in line]
        assert removed and added, diff
        assert all("2s" in line or "2000" in line for line in removed), removed
        # Only what changed: the version folder's path inside the config is no difference.
        assert "/v-" not in diff
        text = run("plan", "-f", str(spec_file), cwd=tmp_path)
        assert "config file haproxy/haproxy.cfg:" in text.out
        assert "load_balancer.health.interval: 2.0 -> 3.0" in text.out, text.out
    finally:
        down = run("down", "-f", str(spec_file), "--yes", cwd=tmp_path, timeout=60)
        assert down.code == 0, down.err
