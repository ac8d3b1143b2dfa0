"""The engine on this machine as a systemd unit: where it runs, the built-in engine's unit
and the steps `up`/`down` take here, decided without I/O; and `plan`'s line on a machine
where systemd is not PID 1 (this test host's case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.specs import merge

from rke2ha.lbhost import local
from rke2ha.lbhost.decide import ENGINES, HostFacts, Record, sha256, up_steps
from rke2ha.lbhost.local import SYSTEMD_RUNTIME, config_is_rke2ha
from rke2ha.plan import Change
from rke2ha.providers.base import SilentReporter
from rke2ha.providers.existing.builtin import load_served_spec
from rke2ha.providers.existing.configs import host_config_text
from rke2ha.providers.existing.localunit import (
    builtin_engine,
    builtin_unit_text,
    check_spec_step,
    local_down_steps,
    local_up_steps,
    unit_name,
)
from rke2ha.providers.existing.placement import packaged_in_use, placement
from rke2ha.providers.existing.unitengine import ADDRESS, KIND, UnitEngine
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec
from rke2ha.state import StateStore

PY = "/opt/venv/bin/python3"


def spec_doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "onprem",
        "hostname": "rancher.unit.rke2ha.test",
        "provider": "existing",
        "nodes": [{"name": f"node-{i}", "address": f"127.0.82.{10 + i}"} for i in (1, 2, 3)],
        "load_balancer": {"engine": "builtin", "address": "127.0.82.10"},
        "dns": {"provider": "manual", "zone": "unit.rke2ha.test"},
    }
    return merge(doc, extra)


def make_spec(tmp_path: Path, **extra: Any) -> Spec:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_doc(**extra)))
    return load_spec(path)


def facts(**kw: Any) -> HostFacts:
    base: dict[str, Any] = {
        "package_installed": False,
        "config_sha": None,
        "original_sha": None,
        "enabled": "not-found",
        "active": "inactive",
    }
    return HostFacts(**{**base, **kw})


def kinds(steps: list[Any]) -> list[str]:
    return [s.kind for s in steps]


# ---- placement --------------------------------------------------------------------------


def test_root_with_systemd_runs_each_engine_as_a_unit(tmp_path: Path) -> None:
    for engine in ("builtin", "haproxy", "nginx"):
        where = placement(
            make_spec(tmp_path, load_balancer={"engine": engine}), root=True, systemd_booted=True
        )
        assert where.unit, (engine, where.why)
        assert where.why.startswith(f"{engine} runs as an enabled systemd unit")


def test_without_systemd_or_root_the_engine_stays_a_child_and_the_line_says_why(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path)
    no_systemd = placement(spec, root=True, systemd_booted=False)
    assert not no_systemd.unit
    assert "not a systemd unit: systemd is not the init system here" in no_systemd.why
    not_root = placement(spec, root=False, systemd_booted=True)
    assert not not_root.unit and "needs root" in not_root.why
    assert "\n" not in no_systemd.why + not_root.why


def test_what_the_packaged_units_cannot_carry_stays_a_child(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    with_token = make_spec(
        tmp_path, load_balancer={"engine": "haproxy", "health": {"token_file": str(token)}}
    )
    where = placement(with_token, root=True, systemd_booted=True)
    assert not where.unit and "token_file" in where.why
    # The built-in engine reads the token itself (from the spec): a unit is fine.
    builtin = make_spec(tmp_path, load_balancer={"health": {"token_file": str(token)}})
    assert placement(builtin, root=True, systemd_booted=True).unit


# ---- the built-in engine's unit -----------------------------------------------------------


def test_builtin_unit_runs_this_rke2ha_on_the_spec_and_reloads_with_sighup(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path)
    assert unit_name(spec) == "rke2ha-lb-onprem.service"
    engine = builtin_engine(spec, PY)
    assert engine.config == "/etc/systemd/system/rke2ha-lb-onprem.service"
    text = builtin_unit_text(spec, tmp_path / "spec.yaml", PY, "ab" * 32)
    lines = text.splitlines()
    assert f"ExecStart={PY} -m rke2ha lb serve -f {tmp_path / 'spec.yaml'}" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines
    # The version is in the text: a spec change changes the unit, so `up` reloads it.
    assert text != builtin_unit_text(spec, tmp_path / "spec.yaml", PY, "cd" * 32)


def test_builtin_first_up_writes_checks_enables_and_starts_without_a_package(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path)
    engine = builtin_engine(spec, PY)
    text = builtin_unit_text(spec, tmp_path / "spec.yaml", PY, "ab" * 32)
    check = check_spec_step(PY, tmp_path / "spec.yaml")
    steps, record = local_up_steps(engine, facts(), text, None, check)
    assert kinds(steps) == ["upload", "check", "replace", "enable", "enable", "start", "verify"]
    assert steps[1] == check and "builtincheck" in check.command
    assert steps[3].command == "systemctl daemon-reload"  # the new file, before enabling it
    assert steps[4].command == "systemctl enable rke2ha-lb-onprem.service"
    assert not any("apt-get" in s.command for s in steps)
    assert record == Record("builtin", False, False, True, False, sha256(text))

    # Already so: nothing to do.
    same = facts(config_sha=sha256(text), enabled="enabled", active="active")
    assert local_up_steps(engine, same, text, record, check)[0] == []

    # A new version: checked, replaced, systemd told, reloaded (SIGHUP through the unit).
    newer = builtin_unit_text(spec, tmp_path / "spec.yaml", PY, "cd" * 32)
    steps, _ = local_up_steps(engine, same, newer, record, check)
    assert kinds(steps) == ["upload", "check", "replace", "enable", "reload", "verify"]


def test_builtin_down_stops_disables_then_removes_the_unit_file(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    engine = builtin_engine(spec, PY)
    text = "unit\n"
    record = Record("builtin", False, False, True, False, sha256(text))
    running = facts(config_sha=sha256(text), enabled="enabled", active="active")
    steps, notes = local_down_steps(engine, running, record)
    assert [s.command for s in steps] == [
        "systemctl stop rke2ha-lb-onprem.service",
        "systemctl disable rke2ha-lb-onprem.service",
        "rm -f /etc/systemd/system/rke2ha-lb-onprem.service",
        "systemctl daemon-reload",
    ]
    assert notes == []
    # Someone else's edit of the file: it stays, and `down` says so.
    edited = facts(config_sha=sha256("theirs"), enabled="enabled", active="active")
    steps, notes = local_down_steps(engine, edited, record)
    assert "rm -f" not in " ".join(s.command for s in steps) and "changed after" in notes[0]


def test_haproxy_here_checks_keeps_the_original_then_replaces_enables_and_starts() -> None:
    haproxy = ENGINES["haproxy"]
    found = facts(package_installed=True, config_sha=sha256("theirs"), enabled="disabled")
    steps, record = local_up_steps(haproxy, found, "global\n", None)
    assert [s.command for s in steps] == [
        "umask 022 && cat > /etc/haproxy/haproxy.cfg.rke2ha-new",
        "/usr/sbin/haproxy -c -f /etc/haproxy/haproxy.cfg.rke2ha-new",
        "cp -p /etc/haproxy/haproxy.cfg /etc/haproxy/haproxy.cfg.rke2ha-orig",
        "chmod 0644 /etc/haproxy/haproxy.cfg.rke2ha-new && mv -f "
        "/etc/haproxy/haproxy.cfg.rke2ha-new /etc/haproxy/haproxy.cfg",
        "systemctl enable haproxy.service",
        "systemctl start haproxy.service",
        "systemctl is-active haproxy.service",
    ]
    assert steps[0].input == "global\n"
    assert record.saved_original and record.enabled_unit and not record.installed_package


@pytest.mark.parametrize("engine", ["haproxy", "nginx"])
@pytest.mark.parametrize(("enabled", "active"), [("enabled", "inactive"), ("disabled", "active")])
def test_a_packaged_unit_serving_the_machines_own_config_is_not_taken_over(
    tmp_path: Path, engine: str, enabled: str, active: str
) -> None:
    spec = make_spec(tmp_path, load_balancer={"engine": engine})
    unit, config = ENGINES[engine].unit, ENGINES[engine].config
    theirs = facts(package_installed=True, config_sha=sha256("theirs"), enabled=enabled,
                   active=active)  # fmt: skip
    why = packaged_in_use(unit, config, theirs, config_ours=False)
    assert why is not None and unit in why and config in why
    where = placement(spec, root=True, systemd_booted=True, in_use=why)
    assert not where.unit
    assert where.why.startswith("the engine runs as a child process") and where.why.endswith(
        "that rke2ha did not write; it is left alone"
    )
    assert "\n" not in where.why


def test_a_packaged_unit_rke2ha_may_use() -> None:
    haproxy = ENGINES["haproxy"]
    used = facts(package_installed=True, config_sha=sha256("x"), enabled="enabled", active="active")
    # Its config is rke2ha's (a run before this one wrote it).
    assert packaged_in_use(haproxy.unit, haproxy.config, used, config_ours=True) is None
    # Installed, neither enabled nor running: nothing of the machine's is served.
    idle = facts(package_installed=True, config_sha=sha256("x"), enabled="disabled")
    assert packaged_in_use(haproxy.unit, haproxy.config, idle, config_ours=False) is None
    # Not installed at all.
    assert packaged_in_use(haproxy.unit, haproxy.config, facts(), config_ours=False) is None


def test_config_is_rke2ha_reads_the_rendered_header(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, load_balancer={"engine": "haproxy"})
    ours = tmp_path / "haproxy.cfg"
    ours.write_text(host_config_text(spec))
    assert config_is_rke2ha(str(ours))
    theirs = tmp_path / "theirs.cfg"
    theirs.write_text("global\n    daemon\n")
    assert not config_is_rke2ha(str(theirs))
    assert not config_is_rke2ha(str(tmp_path / "missing.cfg"))


# ---- plan on this test host ---------------------------------------------------------------


@pytest.mark.skipif(SYSTEMD_RUNTIME.is_dir(), reason="this host runs systemd as PID 1")
def test_plan_says_why_the_engine_is_not_a_unit_here(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_doc()))
    done = subprocess.run(
        [sys.executable, "-m", "rke2ha", "plan", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "load_balancer.engine" in out and "load_balancer.unit" not in out
    line = [x for x in out.splitlines() if "not a systemd unit" in x]
    assert len(line) == 1 and "systemd is not the init system here (PID 1)" in line[0], out


def test_a_config_rke2ha_wrote_is_never_kept_as_the_hosts_own() -> None:
    """A host without a config at the first `up`: a later change replaces rke2ha's own file
    without saving it as "the original", so `down` removes it rather than putting it back."""
    haproxy = ENGINES["haproxy"]
    _, record = up_steps(haproxy, facts(package_installed=True), "v1\n", None)
    assert not record.saved_original
    ours = facts(package_installed=True, config_sha=sha256("v1\n"), enabled="enabled",
                 active="active")  # fmt: skip
    steps, later = up_steps(haproxy, ours, "v2\n", record)
    assert "save_original" not in kinds(steps) and not later.saved_original


def test_the_builtin_units_check_refuses_what_lb_serve_would(tmp_path: Path) -> None:
    good = tmp_path / "spec.yaml"
    good.write_text(yaml.safe_dump(spec_doc()))
    bad = tmp_path / "l7.yaml"
    bad.write_text(yaml.safe_dump(spec_doc(load_balancer={"layer": 7})))  # no tls: files
    results = {}
    for path in (good, bad):
        step = check_spec_step(sys.executable, path)
        done = subprocess.run(step.command, shell=True, capture_output=True, text=True, timeout=60)
        results[path.name] = (done.returncode, done.stdout + done.stderr)
    assert results["spec.yaml"][0] == 0, results
    code, said = results["l7.yaml"]
    assert code == 1 and "load_balancer.tls is not set" in said and "Traceback" not in said


# ---- what the built-in unit serves ----------------------------------------------------------


def test_builtin_unit_serves_a_copy_in_the_state_folder_that_down_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path)
    store = StateStore(spec.state_dir, spec.name)
    unit = UnitEngine(spec, store.load_or_new("existing"), store)
    served = spec.state_dir / "existing/builtin/current/builtin/lb-spec.yaml"
    assert unit.spec_file == served.absolute()
    exec_start = next(x for x in unit.text.splitlines() if x.startswith("ExecStart="))
    assert exec_start.endswith(f"lb serve -f {served.absolute()}")
    assert str(tmp_path / "spec.yaml") not in unit.text

    unit._write_served_copy()
    copied = yaml.safe_load(served.read_text())
    assert copied["load_balancer"]["address"] == "127.0.82.10"
    assert load_served_spec(served).load_balancer.engine == "builtin"
    # An edit of the user's spec does not reach what the unit serves until `up` again.
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(spec_doc(load_balancer={"address": "127.0.82.99"}))
    )
    assert yaml.safe_load(served.read_text())["load_balancer"]["address"] == "127.0.82.10"
    # A second write of the same version keeps the folder; only the current one is kept.
    unit._write_served_copy()
    assert [p.name for p in served.parents[2].glob("v-*")] == [served.parents[1].resolve().name]

    # `down`: the unit's steps run here only as root with systemd, so none are run.
    record = Record("builtin", False, False, True, False, sha256(unit.text))
    unit._save(record, "created")
    monkeypatch.setattr(local, "run", lambda engine, plan, note: [])
    notes: list[str] = []

    class Notes(SilentReporter):
        def note(self, text: str) -> None:
            notes.append(text)

    unit.destroy(Change("delete", ADDRESS, KIND), Notes())
    assert not (spec.state_dir / "existing/builtin").exists()
    assert any(str(served.absolute()) in n for n in notes)
    assert ADDRESS not in store.load_or_new("existing").resources
