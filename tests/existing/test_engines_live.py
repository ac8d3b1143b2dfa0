"""`up` / `plan` / `down` with provider existing, for real: HAProxy, nginx and the built-in
load balancer in front of three node emulators, traffic checked with curl."""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from pathlib import Path

import pytest
from tests.existing.conftest import (
    HOSTNAME,
    LB,
    Deployment,
    Emulators,
    curl,
    existing_spec,
    https_get,
    keepalive_request,
    port_80_redirect,
)
from tests.support.certs import write_self_signed

from rke2ha import procs
from rke2ha.providers import lifecycle
from rke2ha.providers.base import ProviderOptions, SilentReporter
from rke2ha.providers.existing.health import wait_healthy
from rke2ha.specfile import load_spec

ENGINES = ["haproxy", "nginx", "builtin"]


@pytest.mark.parametrize("engine", ENGINES)
def test_up_serves_reloads_and_down_removes_all(
    engine: str, deployment: Deployment, emulators: Emulators
) -> None:
    # With the health token, a 6443 check only passes on a ready apiserver (200, not 401):
    # HAProxy gets it through its environment, the built-in engine from the file.
    token = {"token_file": str(emulators.token)} if engine != "nginx" else {}
    deployment.write(existing_spec(engine, load_balancer={"health": token}))
    up = deployment.cli("up", "--yes", "--json")
    assert up.code == 0, up.err
    applied = [c["address"] for c in json.loads(up.out)["applied"]]
    assert applied == ["load_balancer.engine", "dns_record.hostname"]
    # manual DNS: the records to create, apart from the next steps
    records = json.loads(up.out)["dns_instructions"]
    assert f"{HOSTNAME}. 60 IN A {LB}" in records

    pid = deployment.engine_pid()
    config = Path(deployment.state()["resources"]["load_balancer.engine"]["attrs"]["config_file"])
    if engine == "haproxy":
        # the token reaches HAProxy through its environment, never through the config file
        text = config.read_text()
        assert "${RKE2HA_HEALTH_TOKEN}" in text
        assert emulators.token.read_text().strip() not in text
    assert config.exists() and str(config) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
        errors="replace"
    ).replace("\0", " ")

    # Traffic through the engine reaches the nodes: 443 (TLS to the ingress), 80, 6443.
    status, node, _ = https_get(emulators.ca)
    assert status == 200 and node in {"node-1", "node-2", "node-3"}
    redirect = port_80_redirect()
    assert redirect.stdout == f"308 https://{HOSTNAME}/", redirect.stderr
    api = curl(f"https://{LB}:6443/readyz", "-k", "-o", "/dev/null", "-w", "%{http_code}")
    assert api.stdout == "401"  # RKE2's apiserver to an anonymous caller, through the LB

    # The engine's own view of its backends (`up --wait` without the DNS-dependent check).
    seen = wait_healthy(load_spec(deployment.spec_file), 15.0, SilentReporter())
    if engine == "nginx":
        assert "no active health checks" in seen[0]
    else:
        assert len(seen) == 4 and all(line.endswith(": 3/3 nodes up") for line in seen), seen

    again = deployment.cli("plan", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err

    # A changed spec reloads the same process without dropping an established connection.
    with socket.create_connection((LB, 80), timeout=5) as sock:
        assert keepalive_request(sock).startswith(b"HTTP/1.1 200")
        deployment.write(
            existing_spec(engine, load_balancer={"health": {"interval": "1s", **token}})
        )
        assert deployment.plan_lines() == ["~ load_balancer.engine"]
        reload = deployment.cli("up", "--yes")
        assert reload.code == 0, reload.err
        assert "reloaded" in reload.out
        assert deployment.engine_pid() == pid  # reloaded, not restarted
        assert keepalive_request(sock).startswith(b"HTTP/1.1 200")
    assert https_get(emulators.ca)[0] == 200
    assert deployment.plan_lines() == []

    down = deployment.cli("down", "--yes")
    assert down.code == 0, down.err
    assert "Delete these records in zone" in down.out
    assert not procs.alive(pid)
    assert deployment.our_processes() == []
    assert not deployment.state_file.exists()
    assert not (deployment.directory / ".rke2ha" / "existing").exists()
    assert curl(f"http://{LB}/", "-o", "/dev/null", max_time=2).returncode != 0


def _weak_certificate(cert_path: Path, key_path: Path) -> None:
    write_self_signed(
        cert_path,
        key_path,
        HOSTNAME,
        rsa_bits=1024,
        backdate=datetime.timedelta(days=1),
        valid_for=datetime.timedelta(days=365),
    )


@pytest.mark.parametrize("engine", ["haproxy", "nginx"])
def test_config_the_binary_rejects_replaces_nothing(
    engine: str, deployment: Deployment, emulators: Emulators
) -> None:
    deployment.write(existing_spec(engine))
    assert deployment.cli("up", "--yes").code == 0
    pid = deployment.engine_pid()
    current = os.readlink(deployment.directory / ".rke2ha/existing" / engine / "current")

    # Layer 7 with a certificate `validate` accepts (it covers the hostname, its key matches)
    # on a 1024-bit RSA key, which OpenSSL at Debian's default security level 2 refuses to
    # load ("ee key too small"): the renderer copies it, the binary refuses.
    _weak_certificate(deployment.directory / "tls.crt", deployment.directory / "tls.key")
    deployment.write(
        existing_spec(
            engine, load_balancer={"layer": 7, "tls": {"cert": "tls.crt", "key": "tls.key"}}
        )
    )
    failed = deployment.cli("up", "--yes")
    assert failed.code == 1
    assert "rejects the rendered config (nothing was started or reloaded)" in failed.err
    binary_says = "unable to load SSL certificate" if engine == "haproxy" else "key too small"
    assert binary_says in failed.err, failed.err
    assert "Traceback" not in failed.err

    # The running engine, its config and its traffic are untouched.
    assert deployment.engine_pid() == pid and procs.alive(pid)
    assert os.readlink(deployment.directory / ".rke2ha/existing" / engine / "current") == current
    versions = sorted(
        p.name for p in (deployment.directory / ".rke2ha/existing" / engine).glob("v-*")
    )
    assert versions == [current]  # the rejected version left no folder behind
    assert https_get(emulators.ca)[0] == 200
    assert deployment.plan_lines() == ["~ load_balancer.engine"]


def test_engine_switch_and_restart_after_crash(
    deployment: Deployment, emulators: Emulators
) -> None:
    deployment.write(existing_spec("haproxy"))
    assert deployment.cli("up", "--yes").code == 0
    haproxy = deployment.engine_pid()

    # Switching engines: nginx's config is checked, then HAProxy stops and nginx starts.
    deployment.write(existing_spec("nginx"))
    assert deployment.plan_lines() == ["-/+ load_balancer.engine"]
    assert deployment.cli("up", "--yes").code == 0
    nginx = deployment.engine_pid()
    assert not procs.alive(haproxy) and procs.alive(nginx)
    assert not (deployment.directory / ".rke2ha/existing/haproxy").exists()
    assert https_get(emulators.ca)[0] == 200

    # The engine died behind our back: plan says so and `up` starts it again.
    os.kill(nginx, 15)
    for _ in range(100):
        if not procs.alive(nginx):
            break
        time.sleep(0.05)
    plan = lifecycle.plan(load_spec(deployment.spec_file), ProviderOptions()).plan
    assert [f"{c.symbol} {c.address}" for c in plan.changes] == ["+ load_balancer.engine"]
    assert any("is not running" in note for note in plan.notes)
    assert deployment.cli("up", "--yes").code == 0
    assert deployment.engine_pid() != nginx
    assert https_get(emulators.ca)[0] == 200
