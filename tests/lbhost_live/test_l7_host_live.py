"""Layer 7 and the health token on a load balancer host (`load_balancer.hosts`), on the
test machines: `up` uploads the certificate (and with HAProxy the token's environment file
and its haproxy.service drop-in) as root's 0600 files, TLS ends there for a real client, a
certificate change is a reload, a token change a restart, the 6443 check sends the token
the nodes require, and `down` leaves the machine as it was.

The nodes serve, only between `up`s (whose pre-flight wants their ports free): plain HTTP
on 80 answering their name (the ingress, behind 80/443 at layer 7), and TLS on 6443
answering 200 only to `Authorization: Bearer <the token>` (else 401, as an apiserver that
does not know the caller) and on 9345 (`pong`, the supervisor's `/ping`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.lbhost_live.test_lbhost_live import (
    VIP,
    VRRP_PASSWORD,
    rke2ha,
    wait_holders,
    wait_holders_exactly,
    write_pair_spec,
    write_spec,
)
from tests.lbhost_live.test_pair_check_live import by_id, check_json
from tests.support.certs import write_self_signed
from tests.support.lbnodes import NODES, checked_servers, listing, nodes, wait_active
from tests.support.machines import Machine, Testbed

pytestmark = pytest.mark.root

HOSTNAME = "rancher.rke2ha.test"  # Testbed.spec's hostname
TOKEN = "h7-token-3b9f2c1d8e"
# Run inside the workstation namespace: the SSH adapter given the spec's files with a
# certificate HAProxy cannot load (argv: spec). Exit 3 with the error and the steps that ran.
BAD_CERT = """\
import sys
from rke2ha.lbhost import remote
from rke2ha.lbhost.decide import ENGINES, up_steps
from rke2ha.lbhost.files import SideFile
from rke2ha.providers.existing.configs import host_files
from rke2ha.specfile import load_spec
from rke2ha.ssh.target import host_targets
spec = load_spec(sys.argv[1])
(target,) = host_targets(spec)
engine = ENGINES["haproxy"]
text, files = host_files(spec)
junk = "-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----\\n"
bad = [SideFile(f.path, junk) if f.path.endswith(".pem") else f for f in files]
paths = [f.path for f in bad]
try:
    remote.run(target, engine, lambda f: up_steps(engine, f, text, None, bad)[0], print, paths)
except remote.StepFailed as err:
    print("ERROR:", err)
    print("DONE:", " ".join(s.kind for s in err.done))
    sys.exit(3)
"""


def servers_on_nodes(bed: Testbed, directory: Path) -> contextlib.AbstractContextManager[None]:
    """The nodes' servers, requiring TOKEN on 6443."""
    return checked_servers(bed, directory, TOKEN)


def l7_spec(bed: Testbed, tmp: Path, lb: Machine, engine: str, token: str | None) -> Path:
    """A layer 7 spec for `lb` with a certificate for HOSTNAME (its own CA, so curl can
    verify it) and, when `token`, the health token in a 0600 file."""
    spec = write_spec(bed, tmp / f"{engine}.yaml", lb)
    write_self_signed(tmp / "lb.crt", tmp / "lb.key", HOSTNAME, ca=True)
    doc: dict[str, Any] = yaml.safe_load(spec.read_text())
    doc["load_balancer"].update(
        {"engine": engine, "layer": 7,
         "tls": {"cert": str(tmp / "lb.crt"), "key": str(tmp / "lb.key")}}
    )  # fmt: skip
    doc["rancher"] = {"tls_source": "external"}
    if token is not None:
        (tmp / "health.token").write_text(token + "\n")
        (tmp / "health.token").chmod(0o600)
        doc["load_balancer"]["health"] = {"token_file": str(tmp / "health.token")}
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spec


def https(bed: Testbed, lb: Machine, ca: Path) -> str:
    """One request to https://HOSTNAME/ resolved to the host, verified against `ca`."""
    return https_via(bed, lb.address, ca)


def stat_rows(machine: Machine) -> dict[tuple[str, str], dict[str, str]]:
    """(backend, server) -> HAProxy's CSV fields by name, from the stats page on loopback."""
    code = (
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8404/;csv', timeout=3).read().decode())"
    )
    lines = machine.sh(f'python3 -c "{code}"').stdout.splitlines()
    header = lines[0].lstrip("# ").split(",") if lines else []
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {
        (r["pxname"], r["svname"]): r
        for r in rows
        if r.get("svname") not in ("FRONTEND", "BACKEND")
    }


def wait_states(machine: Machine, want: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
    """backend -> {server: (status, check code)} once each backend in `want` has every node
    in the wanted state (UP, or DOWN with a check that got an answer)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = stat_rows(machine)
        seen = {b: {s: (r["status"], r.get("check_code", "")) for (bb, s), r in rows.items()
                    if bb == b} for b in want}  # fmt: skip
        if all(
            sorted(seen[b]) == list(NODES)
            and all(st.startswith(state) and code for st, code in seen[b].values())
            for b, state in want.items()
        ):
            break
        time.sleep(0.3)
    return seen


def main_pid(machine: Machine, unit: str) -> str:
    pid = machine.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert pid not in ("", "0"), pid
    return pid


def modes(machine: Machine, *paths: str) -> list[str]:
    return machine.sh(f"stat -c '%a %U %G' {' '.join(paths)}").stdout.split("\n")[: len(paths)]


def test_layer7_haproxy_with_the_health_token_on_a_host(testbed: Testbed, tmp_path: Path) -> None:
    pem = f"/etc/haproxy/tls/{HOSTNAME}.pem"
    env = "/etc/haproxy/health-token.env"
    dropin = "/etc/systemd/system/haproxy.service.d/rke2ha-health-token.conf"
    with testbed.extra_machine("lb-l7") as lb:
        before = listing(lb)
        spec = l7_spec(testbed, tmp_path, lb, "haproxy", TOKEN)
        key_line = (tmp_path / "lb.key").read_text().splitlines()[1]

        code, out = rke2ha(testbed, "plan", "-f", str(spec))
        assert code == 0, out
        assert f"upload {pem} to {pem}.rke2ha-new (secret, mode 0600, not shown)" in out, out
        assert f"/usr/sbin/haproxy, with the new {pem};" in out, out
        assert "files = " in out and "daemon-reload" in out, out  # a fingerprint, no text
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        assert TOKEN not in out and key_line not in out
        print(out)  # the README's example (pytest -s)
        assert f"{lb.name}: restart" not in out and f"{lb.name}: start haproxy.service" in out
        assert modes(lb, pem, env) == ["600 root root", "600 root root"]
        assert modes(lb, dropin) == ["644 root root"]
        assert lb.sh(f"stat -c %a {Path(pem).parent}").stdout.strip() == "700"
        # systemd gives HAProxy the token from the file; the config never holds it.
        shown = lb.sh("systemctl show -p EnvironmentFiles haproxy.service").stdout
        assert env in shown, shown
        assert TOKEN not in lb.sh("cat /etc/haproxy/haproxy.cfg").stdout
        code, out = rke2ha(testbed, "plan", "-f", str(spec), "--detailed-exitcode")
        assert code == 0, out
        pid = main_pid(lb, "haproxy.service")

        # A certificate HAProxy cannot load: refused by the host's check of the staged files;
        # nothing in place moved, nothing staged is left, the engine runs on.
        placed = lb.sh(f"sha256sum {pem} /etc/haproxy/haproxy.cfg").stdout
        done = testbed.workstation.run(
            [sys.executable, "-c", BAD_CERT, str(spec)], timeout=60, cwd=str(tmp_path)
        )
        assert done.returncode == 3, done.stdout + done.stderr
        assert "/usr/sbin/haproxy rejects the rendered config" in done.stdout, done.stdout
        assert f"{pem}.rke2ha-new" in done.stdout  # HAProxy's own words name the staged file
        assert "DONE: upload\n" in done.stdout, done.stdout
        assert lb.sh(f"sha256sum {pem} /etc/haproxy/haproxy.cfg").stdout == placed
        left = lb.sh("find /etc/haproxy -name '*.rke2ha-new' -o -name '*.rke2ha-check'").stdout
        assert left == "", left
        assert main_pid(lb, "haproxy.service") == pid

        with servers_on_nodes(testbed, tmp_path):
            states = wait_states(lb, {"rke2ha_ingress": "UP", "rke2ha_6443": "UP"})
            # The nodes answer 200 on 6443 only to the token: HAProxy sent it.
            assert all(v == ("UP", "200") for v in states["rke2ha_6443"].values()), states
            assert all(st == "UP" for st, _ in states["rke2ha_ingress"].values()), states
            assert https(testbed, lb, tmp_path / "lb.crt") in NODES

        # A new certificate alone: uploaded, checked, moved, reloaded (same master).
        old_ca = tmp_path / "old-lb.crt"
        old_ca.write_text((tmp_path / "lb.crt").read_text())
        write_self_signed(tmp_path / "lb.crt", tmp_path / "lb.key", HOSTNAME, ca=True)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        assert f"{lb.name}: reload haproxy.service" in out and "restart" not in out, out
        assert f"{lb.name}: upload the config" not in out, out
        assert main_pid(lb, "haproxy.service") == pid
        assert modes(lb, pem) == ["600 root root"]

        # A wrong token: the environment changes only with a restart (a new master).
        (tmp_path / "health.token").write_text("not-the-token\n")
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        assert f"{lb.name}: restart haproxy.service (a reload keeps its old environment)" in out
        print(out)
        assert "not-the-token" not in out
        assert main_pid(lb, "haproxy.service") != pid

        with servers_on_nodes(testbed, tmp_path):
            states = wait_states(lb, {"rke2ha_ingress": "UP", "rke2ha_6443": "DOWN"})
            # Every node refused the wrong token: 401, so none serves 6443.
            assert all(
                st.startswith("DOWN") and code == "401"
                for st, code in states["rke2ha_6443"].values()
            ), states
            # Once the ingress backend is UP again (it started DOWN after the restart):
            assert all(st == "UP" for st, _ in states["rke2ha_ingress"].values()), states
            assert https(testbed, lb, tmp_path / "lb.crt") in NODES  # the new certificate
            said = https(testbed, lb, old_ca)
            assert said not in NODES and "certificate" in said.lower(), said

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for path in (pem, env, dropin):
            assert f"{lb.name}: remove {path}" in out, out
        after = listing(lb)
        assert after == before, sorted(set(after) ^ set(before))
        gone = lb.sh(f"ls -d {Path(pem).parent} {Path(dropin).parent}")
        assert gone.returncode != 0 and gone.stdout == "", gone.stdout


def test_layer7_nginx_on_a_host_ends_tls_there_and_down_restores_it(
    testbed: Testbed, tmp_path: Path
) -> None:
    crt = f"/etc/nginx/tls/{HOSTNAME}.crt"
    key = f"/etc/nginx/tls/{HOSTNAME}.key"
    with testbed.extra_machine("lb-n7") as lb:
        before = listing(lb)
        spec = l7_spec(testbed, tmp_path, lb, "nginx", None)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        assert f"{lb.name}: check it with the host's /usr/sbin/nginx, with the new" in out, out
        assert wait_active(lb, ("nginx.service",)) == ["active"]
        assert modes(lb, crt, key) == ["600 root root", "600 root root"]
        pid = main_pid(lb, "nginx.service")

        write_self_signed(tmp_path / "lb.crt", tmp_path / "lb.key", HOSTNAME, ca=True)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0 and f"{lb.name}: reload nginx.service" in out, out
        # nginx's reload keeps the master (nginx -s reload: nginx.org/en/docs/control.html).
        assert main_pid(lb, "nginx.service") == pid

        with servers_on_nodes(testbed, tmp_path):
            seen = set()
            deadline = time.monotonic() + 20
            while len(seen) < len(NODES) and time.monotonic() < deadline:
                answer = https(testbed, lb, tmp_path / "lb.crt")
                assert answer in NODES, answer
                seen.add(answer)
            assert seen == set(NODES), seen

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        after = listing(lb)
        assert after == before, sorted(set(after) ^ set(before))
        assert lb.sh("ls -d /etc/nginx/tls").returncode != 0


def test_layer7_haproxy_pair_serves_tls_through_the_virtual_ip_and_check_passes(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lb7-a") as lb_a, testbed.extra_machine("lb7-b") as lb_b:
        pair = [lb_a, lb_b]
        before = {m.name: listing(m) for m in pair}
        spec = l7_pair_spec(testbed, tmp_path, pair, "haproxy", TOKEN)

        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            track = m.sh("cat /etc/keepalived/keepalived.conf").stdout
            assert "haproxy /run/haproxy/admin.sock rke2ha_ingress rke2ha_6443" in track, track

        with servers_on_nodes(testbed, tmp_path):
            held = wait_holders(pair, 1, 30)
            assert len(held) == 1, held
            holder = next(m for m in pair if m.name == held[0])
            other = next(m for m in pair if m is not holder)
            for m in pair:
                states = wait_states(m, {"rke2ha_ingress": "UP", "rke2ha_6443": "UP"})
                assert all(v == ("UP", "200") for v in states["rke2ha_6443"].values()), states
                # The track script, asked about the layer 7 backend alone, passes.
                said = m.sh(
                    "python3 /etc/keepalived/rke2ha-track.py haproxy /run/haproxy/admin.sock "
                    "rke2ha_ingress"
                )
                assert said.returncode == 0, said.stderr
            assert https_via(testbed, VIP, tmp_path / "lb.crt") in NODES

            doc = by_id(check_json(testbed, spec, "--ca", str(tmp_path / "lb.crt")))
            for check_id in ("lb.pair.vip", "lb.pair.standby", f"lb.host.{lb_a.name}",
                             f"lb.host.{lb_b.name}", "lb.port.443", "lb.port.80",
                             "tls.certificate", "http.redirect"):  # fmt: skip
                assert doc[check_id]["status"] == "pass", (check_id, doc[check_id])
            assert "ingress UP" in doc[f"lb.host.{lb_a.name}"]["detail"], doc
            code, said = rke2ha(testbed, "check", "-f", str(spec), "--ca", str(tmp_path / "lb.crt"))
            print(said)  # the README's example (pytest -s)

            # The holder's HAProxy stops: the address, and TLS through it, move to the other.
            holder.sh("systemctl stop haproxy.service", check=True)
            assert wait_holders_exactly(pair, [other.name], 15) == [other.name]
            assert https_via(testbed, VIP, tmp_path / "lb.crt") in NODES

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            after = listing(m)
            assert after == before[m.name], (m.name, sorted(set(after) ^ set(before[m.name])))


def l7_pair_spec(
    bed: Testbed, tmp: Path, pair: list[Machine], engine: str, token: str | None
) -> Path:
    """`write_pair_spec`'s keepalived pair with `l7_spec`'s layer 7 settings."""
    spec = write_pair_spec(bed, tmp / "pair.yaml", pair, VRRP_PASSWORD, engine=engine)
    layer7 = yaml.safe_load(l7_spec(bed, tmp, pair[0], engine, token).read_text())
    doc: dict[str, Any] = yaml.safe_load(spec.read_text())
    for field in ("layer", "tls", "health"):
        if field in layer7["load_balancer"]:
            doc["load_balancer"][field] = layer7["load_balancer"][field]
    doc["rancher"] = layer7["rancher"]
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spec


def test_layer7_nginx_pair_serves_tls_through_the_virtual_ip(
    testbed: Testbed, tmp_path: Path
) -> None:
    with testbed.extra_machine("lbn7-a") as lb_a, testbed.extra_machine("lbn7-b") as lb_b:
        pair = [lb_a, lb_b]
        before = {m.name: listing(m) for m in pair}
        spec = l7_pair_spec(testbed, tmp_path, pair, "nginx", None)
        code, out = rke2ha(testbed, "up", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            assert wait_active(m, ("nginx.service", "keepalived.service")) == ["active"] * 2
            assert modes(m, f"/etc/nginx/tls/{HOSTNAME}.key") == ["600 root root"]
            track = m.sh("grep 'script \"' /etc/keepalived/keepalived.conf").stdout
            # At layer 7 nginx forwards 80 and 443 to the nodes' port 80, never to 443.
            assert f"{nodes_of(testbed)[0]}:80 " in track and ":443" not in track, track

        with checked_servers(testbed, tmp_path):
            held = wait_holders(pair, 1, 30)
            assert len(held) == 1, held
            holder = next(m for m in pair if m.name == held[0])
            other = next(m for m in pair if m is not holder)
            assert https_via(testbed, VIP, tmp_path / "lb.crt") in NODES
            holder.sh("systemctl stop nginx.service", check=True)
            assert wait_holders_exactly(pair, [other.name], 15) == [other.name]
            assert https_via(testbed, VIP, tmp_path / "lb.crt") in NODES

        code, out = rke2ha(testbed, "down", "-f", str(spec), "--yes")
        assert code == 0, out
        for m in pair:
            after = listing(m)
            assert after == before[m.name], (m.name, sorted(set(after) ^ set(before[m.name])))


def nodes_of(bed: Testbed) -> list[str]:
    return [m.address for m in nodes(bed)]


def https_via(bed: Testbed, address: str, ca: Path) -> str:
    done = bed.workstation.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(ca),
         "--resolve", f"{HOSTNAME}:443:{address}", f"https://{HOSTNAME}/"],
        timeout=15,
    )  # fmt: skip
    return done.stdout + done.stderr
