"""`provider: existing` without `load_balancer.hosts`, run INSIDE a test machine whose PID 1
is systemd, as root: `up` installs the engine as an enabled unit there (the built-in one as
`rke2ha-lb-<name>.service`, then HAProxy through its packaged unit), traffic reaches the
node machines through it, a reboot brings it back on its own, a second `up` changes
nothing, and `down` leaves the machine's units and files as they were.

rke2ha runs from this worktree's .venv, bind-mounted read-only at the same path, with the
interpreter that venv was made from (bound too when it is not the machines' own /usr one).
The nodes answer HTTP on port 80 for the test (`web_on_nodes`): the engines' port 80/443
checks find them up.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO
from tests.lbhost_live.test_lbhost_live import NODES, nodes, web_on_nodes
from tests.support.machines import Machine, Testbed
from tests.support.machines.testbed import TIMINGS

pytestmark = pytest.mark.root

RKE2HA = f"{REPO}/.venv/bin/rke2ha"
WORK = "/root/unit-here"
SPEC = f"{WORK}/spec.yaml"
BUILTIN_UNIT = "rke2ha-lb-rancher.service"
# The spec copy the built-in unit serves (`localunit.served_spec_file`).
SERVED = f"{WORK}/.rke2ha/existing/builtin/current/builtin/lb-spec.yaml"
# Run inside the machine: the local adapter itself, given a config HAProxy rejects.
REJECTED = """\
import sys
from rke2ha.lbhost import local
from rke2ha.lbhost.decide import ENGINES, up_steps
from rke2ha.lbhost.remote import StepFailed
engine = ENGINES["haproxy"]
bad = "global\\n    no-such-keyword 1\\n"
try:
    local.run(engine, lambda facts: up_steps(engine, facts, bad, None)[0], print)
except StepFailed as err:
    print("ERROR:", err)
    print("DONE:", " ".join(s.kind for s in err.done))
    sys.exit(3)
"""


def binds() -> tuple[str, ...]:
    """The worktree (with .venv) and, unless it is /usr's, the venv's base interpreter."""
    base = Path(sys.base_prefix)
    return (str(REPO),) + (() if base == Path("/usr") else (str(base),))


def snapshot(machine: Machine) -> dict[str, str]:
    """What `down` must leave as it found: unit files and links, enabled units, haproxy."""
    script = (
        "echo files=$(find /etc/systemd/system | sort | sha256sum | cut -d' ' -f1); "
        "echo enabled=$(systemctl list-unit-files --state=enabled --no-legend | sort "
        "| sha256sum | cut -d' ' -f1); "
        "echo units=$(systemctl list-units --all --no-legend 'rke2ha*' | wc -l); "
        "echo haproxy_files=$(ls /etc/haproxy); "
        "echo haproxy_cfg=$(sha256sum /etc/haproxy/haproxy.cfg | cut -d' ' -f1); "
        "echo haproxy=$(systemctl is-enabled haproxy.service), "
        "$(systemctl is-active haproxy.service)"
    )
    out = machine.sh(script).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def rke2ha(machine: Machine, *args: str) -> tuple[int, str]:
    done = machine.sh(f"cd {WORK} && {RKE2HA} {' '.join(args)}", timeout=120)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    return done.returncode, out


def service(machine: Machine, unit: str) -> str:
    enabled = machine.sh(f"systemctl is-enabled {unit}").stdout.strip()
    return f"{enabled}, {machine.sh(f'systemctl is-active {unit}').stdout.strip()}"


def through(bed: Testbed, machine: Machine, timeout: float = 20.0) -> str:
    """The first answer of `http://<machine>/` from the workstation that names a node."""
    deadline = time.monotonic() + timeout
    answer = ""
    while time.monotonic() < deadline:
        done = bed.workstation.run(
            ["curl", "-sS", "--max-time", "3", f"http://{machine.address}/"], timeout=10
        )
        answer = done.stdout + done.stderr
        if answer in NODES:
            return answer
        time.sleep(0.3)
    return answer


def write_spec(bed: Testbed, machine: Machine, engine: str) -> None:
    doc = bed.spec(nodes(bed), ssh=False)
    doc["load_balancer"] = {
        "layer": 4,
        "engine": engine,
        "address": machine.address,
        # HAProxy wants ~2 x maxconn open files; a test machine's hard limit is the runner's.
        "max_connections": 4000,
        "health": {"interval": "500ms", "rise": 1, "fall": 2},
    }
    machine.sh(f"mkdir -p {WORK} && cat > {SPEC}", input=yaml.safe_dump(doc), check=True)


def test_engine_here_is_an_enabled_unit_that_survives_a_reboot(testbed: Testbed) -> None:
    started = time.monotonic()
    with testbed.extra_machine("lbu-1", bind_ro=binds()) as lb:
        assert lb.sh("cat /proc/1/comm").stdout.strip() == "systemd"
        assert lb.sh(f"{RKE2HA} --version").returncode == 0
        before = snapshot(lb)
        write_spec(testbed, lb, "builtin")

        code, out = rke2ha(lb, "plan", "-f", SPEC)
        assert code == 0, out
        assert "load_balancer.unit" in out and "builtin runs as an enabled systemd unit" in out
        assert "not a systemd unit" not in out

        with web_on_nodes(testbed):
            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0, out
            assert service(lb, BUILTIN_UNIT) == "enabled, active"
            unit = lb.sh(f"cat /etc/systemd/system/{BUILTIN_UNIT}").stdout
            assert f"ExecStart={REPO}/.venv/bin/python" in unit and f"-f {SERVED}" in unit
            # The unit serves the copy `up` made, not the spec where it sits.
            assert lb.sh(f"test -f {SERVED}").returncode == 0
            # The engine is the unit's process, not a child of the rke2ha that started it.
            pid = lb.sh(f"systemctl show -p MainPID --value {BUILTIN_UNIT}").stdout.strip()
            assert pid not in ("", "0")
            assert lb.sh(f"ps -o ppid= -p {pid}").stdout.strip() == "1"
            assert through(testbed, lb) in NODES

            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0 and "No changes" in out, out
            code, out = rke2ha(lb, "plan", "-f", SPEC, "--detailed-exitcode")
            assert code == 0, out

            # A reboot: the unit comes back on its own and serves.
            lb.stop()
            rebooted = time.monotonic()
            lb.start()
            assert service(lb, BUILTIN_UNIT) == "enabled, active"
            assert through(testbed, lb) in NODES
            TIMINGS.append(
                f"lbu-1: {BUILTIN_UNIT} serving {time.monotonic() - rebooted:.1f}s after the "
                "machine was started again (reboot)"
            )
            code, out = rke2ha(lb, "plan", "-f", SPEC, "--detailed-exitcode")
            assert code == 0, out

            # The machine's own HAProxy, enabled with its packaged config: not taken over.
            write_spec(testbed, lb, "haproxy")
            assert lb.sh("systemctl enable haproxy.service").returncode == 0
            try:
                code, out = rke2ha(lb, "plan", "-f", SPEC)
            finally:
                lb.sh("systemctl disable haproxy.service")
            assert code == 0, out
            assert (
                "not a systemd unit: haproxy.service is enabled here with "
                "/etc/haproxy/haproxy.cfg that rke2ha did not write; it is left alone"
            ) in out, out
            assert "check it with the host's" not in out

            # Another engine: the built-in unit goes, HAProxy's packaged unit serves.
            code, out = rke2ha(lb, "plan", "-f", SPEC)
            assert code == 0, out
            assert f"-/+ load_balancer.unit  ({BUILTIN_UNIT})" in out, out
            assert f"disable {BUILTIN_UNIT}" in out and "check it with the host's" in out
            assert "install package" not in out  # the machine has haproxy already
            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0, out
            assert service(lb, "haproxy.service") == "enabled, active"
            assert lb.sh(f"test -e /etc/systemd/system/{BUILTIN_UNIT}").returncode == 1
            assert through(testbed, lb) in NODES
            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0 and "No changes" in out, out
            # A config HAProxy rejects: checked here, never moved over the running one.
            cfg = lb.sh("sha256sum /etc/haproxy/haproxy.cfg; ls /etc/haproxy").stdout
            main = lb.sh("systemctl show -p MainPID --value haproxy.service").stdout.strip()
            done = lb.sh(f"{REPO}/.venv/bin/python -", input=REJECTED)
            assert done.returncode == 3, done.stdout + done.stderr
            assert "rejects the rendered config" in done.stdout, done.stdout
            assert "no-such-keyword" in done.stdout and "DONE: upload\n" in done.stdout
            assert lb.sh("sha256sum /etc/haproxy/haproxy.cfg; ls /etc/haproxy").stdout == cfg
            assert lb.sh("systemctl show -p MainPID --value haproxy.service").stdout.strip() == (
                main
            )
            # `lb drain` finds the unit's HAProxy through its packaged config's socket.
            code, out = rke2ha(lb, "lb", "drain", NODES[1], "-f", SPEC)
            assert code == 0 and "HAProxy runtime API, /run/haproxy" in out, out
            answers = [through(testbed, lb) for _ in range(9)]
            assert NODES[1] not in answers and set(answers) <= set(NODES), answers
            code, out = rke2ha(lb, "lb", "enable", NODES[1], "-f", SPEC)
            assert code == 0, out

        code, out = rke2ha(lb, "down", "-f", SPEC, "--yes")
        assert code == 0, out
        assert snapshot(lb) == before
        assert lb.sh(f"ls {WORK}").stdout.split() == [Path(SPEC).name], "state left behind"
        assert lb.sh(f"test -e {WORK}/.rke2ha/existing/builtin").returncode == 1
    TIMINGS.append(f"lbu-1: unit-here test {time.monotonic() - started:.1f}s")


def test_nginx_unit_here_drains_by_a_checked_reload_kept_across_up(testbed: Testbed) -> None:
    """nginx as the packaged unit on this machine: `lb drain` renders its config again with
    the node down, checks it, reloads the unit (same master); `up` with a changed spec keeps
    the node down; `lb enable` brings it back."""
    with testbed.extra_machine("lbu-n", bind_ro=binds()) as lb:
        # The package enables and starts nginx on its own config: that would be the
        # machine's own, left alone (then the engine runs as a child process instead).
        lb.sh("systemctl disable --now nginx.service", check=True)
        write_spec(testbed, lb, "nginx")
        with web_on_nodes(testbed):
            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0 and "load_balancer.unit" in out, out
            assert service(lb, "nginx.service") == "enabled, active"
            master = lb.sh("systemctl show -p MainPID --value nginx.service").stdout.strip()
            seen = {through(testbed, lb) for _ in range(12)}
            assert seen == set(NODES), seen

            code, out = rke2ha(lb, "lb", "drain", NODES[1], "-f", SPEC)
            assert code == 0, out
            assert "(nginx config checked and reloaded, this machine, nginx.service)" in out, out
            assert lb.sh("grep -c ' down;' /etc/nginx/nginx.conf").stdout.strip() == "4"
            answers = [through(testbed, lb) for _ in range(12)]
            assert NODES[1] not in answers and set(answers) <= set(NODES), answers

            doc = yaml.safe_load(lb.sh(f"cat {SPEC}").stdout)
            doc["load_balancer"]["balance"] = "roundrobin"
            lb.sh(f"cat > {SPEC}", input=yaml.safe_dump(doc), check=True)
            code, out = rke2ha(lb, "up", "-f", SPEC, "--yes")
            assert code == 0 and "until its old workers stop accepting" in out, out
            assert lb.sh("grep -c ' down;' /etc/nginx/nginx.conf").stdout.strip() == "4"
            answers = [through(testbed, lb) for _ in range(12)]
            assert NODES[1] not in answers, answers

            code, out = rke2ha(lb, "lb", "enable", NODES[1], "-f", SPEC)
            assert code == 0, out
            deadline = time.monotonic() + 20
            while NODES[1] not in answers and time.monotonic() < deadline:
                answers = [through(testbed, lb) for _ in range(6)]
            assert NODES[1] in answers, answers
            assert lb.sh("systemctl show -p MainPID --value nginx.service").stdout.strip() == (
                master
            )
        code, out = rke2ha(lb, "down", "-f", SPEC, "--yes")
        assert code == 0, out
