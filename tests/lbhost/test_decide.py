"""What `up` and `down` do on a load balancer host, decided from its facts (no I/O)."""

from __future__ import annotations

import pytest

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

HAPROXY = ENGINES["haproxy"]
CONFIG = "global\n  maxconn 100\n"
THEIRS = "global\n  maxconn 5\n"


def facts(**kw: object) -> HostFacts:
    base: dict[str, object] = {
        "package_installed": True,
        "config_sha": sha256(THEIRS),
        "original_sha": None,
        "enabled": "disabled",
        "active": "inactive",
    }
    base.update(kw)
    return HostFacts(**base)  # type: ignore[arg-type]


def kinds(steps: list) -> list[str]:
    return [s.kind for s in steps]


def test_parse_facts_of_a_host_with_the_package_disabled() -> None:
    text = (
        "package=install ok installed\nconfig=ab12\noriginal=\nenabled=disabled\nactive=inactive\n"
    )
    assert parse_facts(text) == HostFacts(True, "ab12", None, "disabled", "inactive")


def test_parse_facts_of_a_host_without_the_package() -> None:
    found = parse_facts("package=\nconfig=\noriginal=\nenabled=\nactive=inactive\n")
    assert found == HostFacts(False, None, None, "not-found", "inactive")
    # dpkg's status of a removed package whose conffiles stay is not "installed".
    assert not parse_facts("package=deinstall ok config-files\n").package_installed


def test_package_there_but_disabled_upload_check_keep_replace_enable_start() -> None:
    steps, record = up_steps(HAPROXY, facts(), CONFIG, None)
    assert kinds(steps) == [
        "upload", "check", "save_original", "replace", "enable", "start", "verify",
    ]  # fmt: skip
    # The check runs the host's binary on the staged file, before the move.
    assert steps[1].command == "/usr/sbin/haproxy -c -f /etc/haproxy/haproxy.cfg.rke2ha-new"
    assert steps[0].input == CONFIG
    assert record == Record("haproxy", False, True, True, False, sha256(CONFIG))


def test_missing_package_is_installed_and_purged_by_down() -> None:
    found = facts(package_installed=False, config_sha=None, enabled="not-found")
    steps, record = up_steps(HAPROXY, found, CONFIG, None)
    assert kinds(steps) == ["install", "upload", "check", "replace", "enable", "restart", "verify"]
    assert "apt-get install -y -q haproxy" in steps[0].command
    assert record.installed_package and not record.saved_original
    after = facts(config_sha=sha256(CONFIG), enabled="enabled", active="active")
    down, _ = down_steps(HAPROXY, after, record)
    assert kinds(down) == ["stop", "purge"]


def test_running_service_with_new_config_is_reloaded_not_restarted() -> None:
    found = facts(enabled="enabled", active="active")
    steps, record = up_steps(HAPROXY, found, CONFIG, None)
    assert kinds(steps) == ["upload", "check", "save_original", "replace", "reload", "verify"]
    assert steps[-2].command == "systemctl reload haproxy.service"
    assert record.was_running and not record.enabled_unit


def test_a_host_that_matches_gets_no_step() -> None:
    _, record = up_steps(HAPROXY, facts(), CONFIG, None)
    now = facts(config_sha=sha256(CONFIG), original_sha=sha256(THEIRS), enabled="enabled",
                active="active")  # fmt: skip
    steps, again = up_steps(HAPROXY, now, CONFIG, record)
    assert steps == [] and again == record


def test_second_up_with_a_new_config_keeps_what_was_found_first() -> None:
    _, first = up_steps(HAPROXY, facts(), CONFIG, None)
    now = facts(config_sha=sha256(CONFIG), original_sha=sha256(THEIRS), enabled="enabled",
                active="active")  # fmt: skip
    steps, record = up_steps(HAPROXY, now, "global\n", first)
    # The host's own config is not copied again (that copy would be rke2ha's config).
    assert kinds(steps) == ["upload", "check", "replace", "reload", "verify"]
    assert record.enabled_unit and not record.was_running and record.saved_original
    assert record.config_sha == sha256("global\n")


def test_a_stopped_service_is_started_again() -> None:
    _, first = up_steps(HAPROXY, facts(), CONFIG, None)
    now = facts(config_sha=sha256(CONFIG), original_sha="x", enabled="enabled", active="failed")
    steps, _ = up_steps(HAPROXY, now, CONFIG, first)
    assert kinds(steps) == ["start", "verify"]


def test_down_puts_back_what_was_there_disabled_and_stopped() -> None:
    _, record = up_steps(HAPROXY, facts(), CONFIG, None)
    now = facts(config_sha=sha256(CONFIG), original_sha=sha256(THEIRS), enabled="enabled",
                active="active")  # fmt: skip
    steps, notes = down_steps(HAPROXY, now, record)
    assert kinds(steps) == ["stop", "restore", "disable"]
    assert steps[1].command == "mv -f /etc/haproxy/haproxy.cfg.rke2ha-orig /etc/haproxy/haproxy.cfg"
    assert notes == []


def test_down_of_a_service_that_ran_before_reloads_it_on_its_own_config() -> None:
    _, record = up_steps(HAPROXY, facts(enabled="enabled", active="active"), CONFIG, None)
    now = facts(config_sha=sha256(CONFIG), original_sha=sha256(THEIRS), enabled="enabled",
                active="active")  # fmt: skip
    steps, _ = down_steps(HAPROXY, now, record)
    assert kinds(steps) == ["restore", "restart"]  # neither stopped nor disabled


def test_down_leaves_a_config_someone_changed_since() -> None:
    _, record = up_steps(HAPROXY, facts(), CONFIG, None)
    now = facts(config_sha=sha256("edited by hand"), original_sha=sha256(THEIRS),
                enabled="enabled", active="active")  # fmt: skip
    steps, notes = down_steps(HAPROXY, now, record)
    assert "restore" not in kinds(steps)
    assert notes and "changed after rke2ha wrote it" in notes[0]


def test_no_config_before_means_down_removes_ours() -> None:
    steps, record = up_steps(HAPROXY, facts(config_sha=None), CONFIG, None)
    assert "save_original" not in kinds(steps) and not record.saved_original
    now = facts(config_sha=sha256(CONFIG), enabled="enabled", active="active")
    down, _ = down_steps(HAPROXY, now, record)
    assert kinds(down) == ["stop", "remove_config", "disable"]


@pytest.mark.parametrize("record", [Record("haproxy", False, True, True, False, "abc")])
def test_record_round_trips_through_the_state(record: Record) -> None:
    assert Record.from_attrs({**record.attrs(), "host": "198.18.0.9"}) == record


KEEPALIVED = ENGINES["keepalived"]


def test_keepalived_gets_its_track_script_first_and_a_private_config() -> None:
    # Debian's keepalived ships no config: nothing to keep aside, removed by `down`.
    found = facts(config_sha=None)
    steps, record = up_steps(KEEPALIVED, found, CONFIG, None)
    assert kinds(steps) == ["helper", "upload", "check", "replace", "enable", "start", "verify"]
    helper = steps[0]
    assert helper.input is not None and "show stat" in helper.input
    assert "/etc/keepalived/rke2ha-track.py" in helper.command
    assert "umask 077" in steps[1].command  # the config holds the VRRP password
    assert "chmod 0600" in steps[3].command
    assert "-t -f /etc/keepalived/keepalived.conf.rke2ha-new" in steps[2].command
    assert "config not checked" in steps[2].command  # an old keepalived says so
    # Once in place, a second run does nothing.
    done = facts(config_sha=sha256(CONFIG), enabled="enabled", active="active",
                 helper_sha=sha256(KEEPALIVED.helper[1]))  # type: ignore[index]  # fmt: skip
    assert up_steps(KEEPALIVED, done, CONFIG, record)[0] == []
    down, _ = down_steps(KEEPALIVED, done, record)
    assert kinds(down) == ["stop", "remove_config", "disable", "remove_helper"]


def test_keepalived_facts_read_the_track_script() -> None:
    assert "rke2ha-track.py" in facts_script(KEEPALIVED)
    assert "helper" not in facts_script(HAPROXY)
    assert parse_facts("helper=ab\n").helper_sha == "ab"
    assert parse_facts("package=x\n").helper_sha is None


NGINX = ENGINES["nginx"]


def test_nginx_missing_stream_module_is_installed_and_only_it_purged_by_down() -> None:
    found = facts(missing_modules=("libnginx-mod-stream",))
    steps, record = up_steps(NGINX, found, CONFIG, None)
    assert kinds(steps) == [
        "install", "upload", "check", "save_original", "replace", "enable", "start", "verify",
    ]  # fmt: skip
    assert steps[0].packages == ("libnginx-mod-stream",)
    assert "apt-get install -y -q libnginx-mod-stream " in steps[0].command
    assert steps[2].command == "/usr/sbin/nginx -t -c /etc/nginx/nginx.conf.rke2ha-new"
    assert not record.installed_package and record.installed_modules == ("libnginx-mod-stream",)
    assert Record.from_attrs(record.attrs()) == record
    running = facts(config_sha=sha256(CONFIG), original_sha=sha256(THEIRS), enabled="enabled",
                    active="active")  # fmt: skip
    steps, _ = down_steps(NGINX, running, record)
    assert kinds(steps) == ["stop", "restore", "disable", "purge"]
    assert steps[-1].command.endswith("purge -y -q libnginx-mod-stream")


def test_nginx_and_its_module_both_missing_are_installed_together_and_purged_together() -> None:
    found = facts(package_installed=False, config_sha=None, enabled="not-found",
                  missing_modules=("libnginx-mod-stream",))  # fmt: skip
    steps, record = up_steps(NGINX, found, CONFIG, None)
    assert steps[0].packages == ("nginx", "libnginx-mod-stream")
    steps, _ = down_steps(NGINX, facts(config_sha=sha256(CONFIG)), record)
    assert "purge -y -q nginx libnginx-mod-stream" in steps[1].command


def test_a_record_written_before_modules_existed_reads_back() -> None:
    attrs = Record("haproxy", False, True, True, False, "ab").attrs()
    del attrs["installed_modules"]
    assert Record.from_attrs(attrs).installed_modules == ()


def test_facts_script_takes_any_nginx_flavour_and_names_missing_modules(tmp_path) -> None:
    """The script against a stand-in dpkg-query: nginx-light installed, the module not."""
    import os
    import subprocess

    fake = tmp_path / "dpkg-query"
    fake.write_text(
        "#!/bin/sh\nfor last; do :; done\n"
        'case "$last" in nginx-light) printf "install ok installed";; '
        'libnginx-mod-stream) printf "deinstall ok config-files";; *) exit 1;; esac\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", facts_script(NGINX)], capture_output=True, text=True,
                          env=env, timeout=20, check=True)  # fmt: skip
    found = parse_facts(done.stdout)
    assert found.package_installed, done.stdout
    assert found.missing_modules == ("libnginx-mod-stream",)
    fake.write_text("#!/bin/sh\nexit 1\n")
    done = subprocess.run(["sh", "-c", facts_script(NGINX)], capture_output=True, text=True,
                          env=env, timeout=20, check=True)  # fmt: skip
    assert not parse_facts(done.stdout).package_installed
