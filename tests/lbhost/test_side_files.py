"""Files beside the engine's config on a load balancer host (a layer 7 certificate, the
health token's environment file and drop-in): uploaded staged, checked with the new config
before anything is replaced, 0600, restart for a new environment, and `down` removes only
what rke2ha put there. Pure: `decide` and `files` (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.lbhost.test_spec_hosts import write
from tests.support.certs import write_self_signed

from rke2ha.lbhost.decide import (
    ENGINES,
    HostFacts,
    Record,
    down_steps,
    facts_script,
    parse_facts,
    sha256,
    up_steps,
)
from rke2ha.lbhost.files import DROPIN, FileFacts, SideFile, check_text, fingerprint
from rke2ha.lbhost.requirements import problems
from rke2ha.providers.existing.configs import host_files
from rke2ha.render.keepalived import track_backends, track_command
from rke2ha.specfile import load_spec

HAPROXY = ENGINES["haproxy"]
PEM = "/etc/haproxy/tls/rancher.example.com.pem"
ENV = "/etc/haproxy/health-token.env"
KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n"
CONFIG = f"global\n  maxconn 100\nfrontend f\n  bind :443 ssl crt {PEM}\n"
THEIRS = "global\n  maxconn 5\n"
CERT = SideFile(PEM, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + KEY_TEXT)
TOKEN = SideFile(ENV, 'RKE2HA_HEALTH_TOKEN="tok-s3cret"\n', restart=True,
                 env="RKE2HA_HEALTH_TOKEN")  # fmt: skip
UNIT = SideFile(DROPIN, f"[Service]\nEnvironmentFile={ENV}\n", mode="0644", dropin=True,
                dir_mode="0755")  # fmt: skip


def facts(files: FileFacts | None = None, **kw: Any) -> HostFacts:
    base: dict[str, Any] = {
        "package_installed": True,
        "config_sha": sha256(THEIRS),
        "original_sha": None,
        "enabled": "disabled",
        "active": "inactive",
        "files": files or FileFacts(folders=frozenset({"/etc/haproxy"})),
    }
    base.update(kw)
    return HostFacts(**base)


def kinds(steps: list[Any]) -> list[str]:
    return [s.kind for s in steps]


def secret_free(steps: list[Any]) -> None:
    """No secret in a command line or a progress line (only ever a step's stdin)."""
    for step in steps:
        for secret in ("c2VjcmV0LWtleQ", "tok-s3cret"):
            assert secret not in step.command and secret not in step.what, step
            assert secret not in repr(step)


def test_layer7_first_up_uploads_and_checks_the_certificate_before_anything_is_replaced() -> None:
    steps, record = up_steps(HAPROXY, facts(), CONFIG, None, (CERT,))
    assert kinds(steps) == [
        "mkdir", "upload", "upload", "check", "save_original", "replace", "replace", "enable",
        "start", "verify",
    ]  # fmt: skip
    mkdir, cert, config, check = steps[:4]
    assert mkdir.command == "mkdir -p -m 0700 /etc/haproxy/tls"
    assert cert.input == CERT.text and cert.command == f"umask 077 && cat > {PEM}.rke2ha-new"
    assert "secret, mode 0600, not shown" in cert.what
    assert config.input == CONFIG
    # The check reads the new config naming the staged certificate; it leaves no file.
    assert check.input == CONFIG.replace(PEM, PEM + ".rke2ha-new")
    assert "/usr/sbin/haproxy -c -f /etc/haproxy/haproxy.cfg.rke2ha-check" in check.command
    assert "rm -f /etc/haproxy/haproxy.cfg.rke2ha-check" in check.command
    assert set(check.cleanup) >= {PEM + ".rke2ha-new", HAPROXY.staged}
    moved = steps[5]
    assert moved.command == (
        f"chmod 0600 {PEM}.rke2ha-new && chown root:root {PEM}.rke2ha-new && "
        f"mv -f {PEM}.rke2ha-new {PEM}"
    )
    secret_free(steps)
    assert record.files == ((PEM, CERT.sha),)
    assert record.made_dirs == ("/etc/haproxy/tls",) and record.saved_files == ()


def test_a_changed_certificate_alone_is_checked_then_reloaded() -> None:
    found = FileFacts({PEM: "old"}, {}, frozenset({"/etc/haproxy", "/etc/haproxy/tls"}))
    running = facts(found, config_sha=sha256(CONFIG), enabled="enabled", active="active")
    previous = Record("haproxy", False, True, False, True, sha256(CONFIG), files=((PEM, "old"),))
    steps, record = up_steps(HAPROXY, running, CONFIG, previous, (CERT,))
    assert kinds(steps) == ["upload", "check", "replace", "reload", "verify"]
    assert f"with the new {PEM}" in steps[1].what
    assert record.files == ((PEM, CERT.sha),)
    # The same again: nothing to do.
    same = facts(FileFacts({PEM: CERT.sha}, {}, found.folders), config_sha=sha256(CONFIG),
                 enabled="enabled", active="active")  # fmt: skip
    assert up_steps(HAPROXY, same, CONFIG, record, (CERT,))[0] == []


def test_a_new_token_installs_the_drop_in_and_restarts_since_a_reload_keeps_the_environment() -> (
    None
):
    found = FileFacts({}, {}, frozenset({"/etc/haproxy"}))
    running = facts(found, config_sha=sha256(CONFIG), enabled="enabled", active="active")
    previous = Record("haproxy", False, True, False, True, sha256(CONFIG))
    steps, record = up_steps(HAPROXY, running, CONFIG, previous, (TOKEN, UNIT))
    assert kinds(steps) == [
        "mkdir", "upload", "upload", "check", "replace", "replace", "daemon_reload", "restart",
        "verify",
    ]  # fmt: skip
    assert steps[0].command == "mkdir -p -m 0755 /etc/systemd/system/haproxy.service.d"
    # The config's `.if defined(...)` guard passes in the check with a stand-in value.
    assert "RKE2HA_HEALTH_TOKEN=rke2ha-check /usr/sbin/haproxy -c -f" in steps[3].command
    assert "with the new" not in steps[3].what  # the config names neither file
    assert steps[-2].command == "systemctl restart haproxy.service"
    assert "chmod 0644" in steps[5].command and "chmod 0600" in steps[4].command
    secret_free(steps)
    assert dict(record.files) == {ENV: TOKEN.sha, DROPIN: UNIT.sha}
    # A config change alone later on: the check still defines the variable, and reloads.
    both = FileFacts({ENV: TOKEN.sha, DROPIN: UNIT.sha}, {}, frozenset())
    later = facts(both, config_sha="older", enabled="enabled", active="active")
    steps, _ = up_steps(HAPROXY, later, CONFIG, record, (TOKEN, UNIT))
    assert kinds(steps) == ["upload", "check", "replace", "reload", "verify"]
    assert steps[1].command.startswith("RKE2HA_HEALTH_TOKEN=rke2ha-check /usr/sbin/haproxy -c")


def test_a_file_of_the_hosts_own_at_the_path_is_kept_and_put_back_by_down() -> None:
    found = FileFacts({PEM: "theirs"}, {}, frozenset({"/etc/haproxy", "/etc/haproxy/tls"}))
    steps, record = up_steps(HAPROXY, facts(found), CONFIG, None, (CERT,))
    saved = [s for s in steps if s.kind == "save_original"]
    assert [s.command for s in saved] == [
        f"cp -p {HAPROXY.config} {HAPROXY.original}",
        f"cp -p {PEM} {PEM}.rke2ha-orig",
    ]
    assert record.saved_files == (PEM,) and record.made_dirs == ()
    after = FileFacts({PEM: CERT.sha}, {PEM: "theirs"}, found.folders)
    down, notes = down_steps(
        HAPROXY, facts(after, config_sha=sha256(CONFIG), original_sha="x", enabled="enabled",
                       active="active"), record)  # fmt: skip
    assert f"mv -f {PEM}.rke2ha-orig {PEM}" in [s.command for s in down]
    assert not any(s.kind == "remove_file" for s in down) and notes == []


def test_down_removes_exactly_rke2has_files_and_leaves_a_changed_one() -> None:
    record = Record(
        "haproxy", False, True, True, True, sha256(CONFIG),
        files=((PEM, CERT.sha), (ENV, TOKEN.sha), (DROPIN, UNIT.sha)),
        made_dirs=("/etc/haproxy/tls", "/etc/systemd/system/haproxy.service.d"),
    )  # fmt: skip
    now = FileFacts(
        {PEM: CERT.sha, ENV: "edited by hand", DROPIN: UNIT.sha},
        {},
        frozenset({"/etc/haproxy", "/etc/haproxy/tls", "/etc/systemd/system/haproxy.service.d"}),
    )
    found = facts(now, config_sha=sha256(CONFIG), original_sha="o", enabled="enabled",
                  active="active")  # fmt: skip
    steps, notes = down_steps(HAPROXY, found, record)
    assert kinds(steps) == [
        "restore", "remove_file", "remove_file", "rmdir", "rmdir", "daemon_reload", "disable",
        "restart",
    ]  # fmt: skip
    removed = [s.command for s in steps if s.kind == "remove_file"]
    assert removed == [f"rm -f {PEM}", f"rm -f {DROPIN}"]
    assert all("--ignore-fail-on-non-empty" in s.command for s in steps if s.kind == "rmdir")
    assert notes == [f"{ENV} was changed after rke2ha wrote it; left as it is"]
    # It ran before rke2ha: restarted (not reloaded) so rke2ha's environment leaves with it.
    assert steps[-1].command == "systemctl restart haproxy.service"


def test_a_token_dropped_from_the_spec_is_removed_by_up_with_a_restart() -> None:
    record = Record("haproxy", False, True, False, True, sha256(CONFIG),
                    files=((ENV, TOKEN.sha), (DROPIN, UNIT.sha)))  # fmt: skip
    now = FileFacts({ENV: TOKEN.sha, DROPIN: UNIT.sha}, {}, frozenset())
    found = facts(now, config_sha=sha256(CONFIG), enabled="enabled", active="active")
    steps, after = up_steps(HAPROXY, found, CONFIG, record, ())
    assert kinds(steps) == ["remove_file", "remove_file", "daemon_reload", "restart", "verify"]
    assert after.files == ()


def test_the_facts_script_reads_the_files_back() -> None:
    script = facts_script(HAPROXY, (PEM,))
    assert f"[ -f {PEM} ] && sha256sum {PEM}" in script
    assert f"[ -f {PEM}.rke2ha-orig ]" in script and "[ -d /etc/haproxy/tls ]" in script
    found = parse_facts(
        f"package=install ok installed\nfile:{PEM}=abc\norig:{PEM}=\ndir:/etc/haproxy/tls=1\n"
    )
    assert found.files.sha(PEM) == "abc" and found.files.original(PEM) is None
    assert found.files.folders == frozenset({"/etc/haproxy/tls"})


def test_fingerprint_names_a_change_not_the_content() -> None:
    one = fingerprint({PEM: CERT.sha})
    assert len(one) == 16 and one != fingerprint({PEM: None}) and CERT.sha[:16] != one
    assert check_text(CONFIG, ()) == CONFIG


def l7_spec(tmp_path: Path, engine: str, token: bool) -> Path:
    cert, key = write_self_signed(tmp_path / "c.crt", tmp_path / "c.key", "rancher.example.com")
    lb: dict[str, Any] = {"engine": engine, "layer": 7, "tls": {"cert": str(cert), "key": str(key)}}
    if token:
        secret = tmp_path / "token"
        secret.write_text("tok-s3cret\n")
        secret.chmod(0o600)
        lb["health"] = {"token_file": str(secret)}
    path = write(tmp_path, **lb)
    doc = yaml.safe_load(path.read_text())
    doc["rancher"] = {"tls_source": "external"}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_layer7_haproxy_spec_with_a_token_is_accepted_and_gets_its_files(tmp_path: Path) -> None:
    spec = load_spec(l7_spec(tmp_path, "haproxy", token=True))
    assert problems(spec) == []
    config, files = host_files(spec)
    assert f"ssl crt {PEM}" in config
    by_path = {f.path: f for f in files}
    assert sorted(by_path) == sorted([PEM, ENV, DROPIN])
    assert by_path[PEM].mode == "0600" and "PRIVATE KEY" in by_path[PEM].text
    assert by_path[ENV].restart and by_path[ENV].env == "RKE2HA_HEALTH_TOKEN"
    assert by_path[DROPIN].dropin and f"EnvironmentFile={ENV}" in by_path[DROPIN].text
    # keepalived's track script asks about the backends this config has.
    assert track_backends(spec) == ["rke2ha_ingress", "rke2ha_6443", "rke2ha_9345"]
    for name in track_backends(spec):
        assert f"backend {name}\n" in config


def test_layer7_nginx_gets_chain_and_key_and_no_token_files(tmp_path: Path) -> None:
    spec = load_spec(l7_spec(tmp_path, "nginx", token=True))
    config, files = host_files(spec)
    paths = [f.path for f in files]
    assert paths == ["/etc/nginx/tls/rancher.example.com.crt",
                     "/etc/nginx/tls/rancher.example.com.key"]  # fmt: skip
    assert all(f.mode == "0600" for f in files)
    for path in paths:
        assert path in config
    # nginx's track rule tries the node ports it forwards to: 80 (ingress), 6443, 9345.
    command = track_command(spec)
    assert "10.0.1.11:80" in command and "10.0.1.11:443" not in command


def test_layer7_on_a_host_without_a_certificate_is_refused_naming_the_field(
    tmp_path: Path, run_cli: Any
) -> None:
    path = write(tmp_path, layer=7)
    doc = yaml.safe_load(path.read_text())
    doc["rancher"] = {"tls_source": "external"}
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("validate", "-f", str(path))
    assert result.code == 1, result.out + result.err
    assert "load_balancer.tls" in result.out and "no certificate is given" in result.out
    assert "Traceback" not in result.err


def test_a_token_the_spec_dropped_is_planned_for_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state says rke2ha put the token's files on the host; the spec has no token now:
    the plan shows the files' fingerprint going to `none` and the steps that remove them."""
    from rke2ha.lbhost import remote
    from rke2ha.plan import diff
    from rke2ha.providers.base import Facts
    from rke2ha.providers.existing.hosted import HostedEngine
    from rke2ha.state import ResourceEntry, State, StateStore

    spec = load_spec(write(tmp_path))
    config, files = host_files(spec)
    assert files == ()
    record = Record("haproxy", False, True, False, True, sha256(config),
                    files=((ENV, TOKEN.sha), (DROPIN, UNIT.sha)))  # fmt: skip
    key = "load_balancer.hosts.lb-1"
    state = State("rancher", "existing", "me")
    state.resources[key] = ResourceEntry("lb_host", "lb-1 10.0.0.11", "created", record.attrs())
    asked: list[tuple[str, ...]] = []

    def read(target: Any, engine: Any, paths: tuple[str, ...] = ()) -> HostFacts:
        asked.append(tuple(paths))
        return facts(FileFacts({ENV: TOKEN.sha, DROPIN: UNIT.sha}, {}, frozenset()),
                     config_sha=sha256(config), enabled="enabled", active="active")  # fmt: skip

    monkeypatch.setattr(remote, "read_facts", read)
    hosted = HostedEngine(spec, state, StateStore(tmp_path / "state", "rancher"))
    seen = Facts(observed={})
    hosted.describe(seen)
    assert asked == [(ENV, DROPIN)]  # the recorded files are read back
    plan = diff(hosted.desired(), seen.observed, kind_rank={"lb_host": 1})
    (change,) = plan.changes
    assert [(d.key, d.after) for d in change.diffs] == [("files", "none")]
    hosted.explain(plan)
    assert plan.changes[0].reason == (
        f"on lb-1: remove {ENV}; remove {DROPIN}; systemctl daemon-reload; restart "
        "haproxy.service (a reload keeps its old environment)"
    )
