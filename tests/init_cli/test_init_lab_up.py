"""The lab spec `rke2ha init` writes comes up, passes `check` and goes down (live, loopback
127.0.165.0/24 only; run under flock /tmp/rke2ha-live.lock)."""

from __future__ import annotations

import yaml


def test_the_lab_init_writes_comes_up_and_verifies(run_cli, tmp_path):
    assert run_cli("init", "--provider", "lab", cwd=tmp_path).code == 0
    spec = tmp_path / "rke2ha.yaml"
    text = spec.read_text()
    # The only edit: this test's own loopback range (the admin endpoint moves with it).
    text = text.replace("subnet: 127.0.10.0/24", "subnet: 127.0.165.0/24")
    spec.write_text(text)
    assert yaml.safe_load(text)["lab"]["subnet"] == "127.0.165.0/24"
    try:
        up = run_cli("up", "-f", str(spec), "--detach", cwd=tmp_path, timeout=120)
        assert up.code == 0, up.out[-2000:] + up.err
        check = run_cli("check", "-f", str(spec), cwd=tmp_path, timeout=60)
        assert check.code == 0, check.out[-2000:] + check.err
        assert "0 failed" in check.out
    finally:
        down = run_cli("down", "-f", str(spec), cwd=tmp_path, timeout=60)
    assert down.code == 0, down.out + down.err
