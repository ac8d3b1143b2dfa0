"""Provider existing with the built-in engine at layer 7, for real: `up` starts `lb serve`,
HTTPS through it (verified against the test's own CA) reaches the node emulators' port 80,
a changed certificate or layer 7 setting is a reload of the same process, a key that
does not match the certificate is refused before anything runs, `down` leaves nothing.

This file's loopback range is 127.0.81.0/24 (the other existing tests use 127.0.80.0/24):
nodes .11-.13 on the real ports (80, 443, 6443, 9345; root), the load balancer on .10 with
its admin page on .10:8404. The nodes answer as Rancher installed with tls=external: their
port 80 serves the Rancher host to a load balancer that says X-Forwarded-Proto: https.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.existing.conftest import (
    HOSTNAME,
    Deployment,
    curl,
    existing_spec,
    https_get,
    keepalive_request,
    lab_nodes,
    port_80_redirect,
    torn_down,
)
from tests.support.certs import write_self_signed
from tests.support.specs import merge

from rke2ha import procs
from rke2ha.providers.base import SilentReporter
from rke2ha.providers.existing.health import wait_healthy
from rke2ha.specfile import load_spec

LB = "127.0.81.10"
NODES = ["127.0.81.11", "127.0.81.12", "127.0.81.13"]
NODE_NAMES = {"node-1", "node-2", "node-3"}
ENGINE_ROOT = Path(".rke2ha/existing/builtin")


@pytest.fixture(scope="module")
def layer7_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Three node emulators on 127.0.81.11-13, real ports, Rancher with tls=external."""
    if os.geteuid() != 0:
        pytest.skip("the emulators and the engine bind ports 80/443 on 127.0.81.x: needs root")
    directory = tmp_path_factory.mktemp("existing-l7-nodes")
    with lab_nodes(directory, NODES, "127.0.81.0/24", rancher={"tls_source": "external"}):
        yield


@pytest.fixture
def layer7_deployment(tmp_path: Path, layer7_nodes: None) -> Iterator[Deployment]:
    """A spec folder with a certificate, torn down after the test."""
    write_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", HOSTNAME, ca=True)
    with torn_down(tmp_path) as deployed:
        yield deployed


def layer7_spec(**load_balancer: Any) -> dict[str, Any]:
    spec = existing_spec(
        "builtin",
        nodes=[{"name": f"node-{i + 1}", "address": a} for i, a in enumerate(NODES)],
        load_balancer={
            "layer": 7,
            "address": LB,
            "admin": f"{LB}:8404",
            "tls": {"cert": "tls.crt", "key": "tls.key"},
        },
    )
    return merge(spec, {"load_balancer": load_balancer})


def tls_connection(ca: Path) -> ssl.SSLSocket:
    """A TLS connection to the load balancer's 443, verified against `ca` for HOSTNAME."""
    context = ssl.create_default_context(cafile=str(ca))
    return context.wrap_socket(
        socket.create_connection((LB, 443), timeout=5), server_hostname=HOSTNAME
    )


def new_certificate(folder: Path) -> Path:
    """Replace tls.crt/tls.key in place with a fresh pair; a copy of the old certificate."""
    old = folder / "old-ca.crt"
    shutil.copy(folder / "tls.crt", old)
    write_self_signed(folder / "tls.crt", folder / "tls.key", HOSTNAME, ca=True)
    return old


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((LB, port), timeout=1):
            return True
    except OSError:
        return False


def test_up_serves_https_reloads_every_change_and_down_removes_all(
    layer7_deployment: Deployment,
) -> None:
    ca = layer7_deployment.directory / "tls.crt"  # self-signed with CA:TRUE: its own trust anchor
    layer7_deployment.write(layer7_spec())
    up = layer7_deployment.cli("up", "--yes")
    assert up.code == 0, up.out + up.err
    assert "the built-in load balancer started" in up.out

    pid = layer7_deployment.engine_pid()
    attrs = layer7_deployment.state()["resources"]["load_balancer.engine"]["attrs"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert " lb serve -f " in cmdline and attrs["config_file"] in cmdline
    # The version holds its own copies, the key private, like haproxy's and nginx's.
    current = layer7_deployment.directory / ENGINE_ROOT / "current"
    assert (current / "builtin/tls.crt").read_bytes() == ca.read_bytes()
    assert (current / "builtin/tls.key").stat().st_mode & 0o777 == 0o600

    # Real TLS, verified against the test's CA, ends at the load balancer; plain HTTP to a
    # node's port 80 answers (the Rancher stand-in's /ping).
    status, node, body = https_get(ca, LB)
    assert (status, body) == (200, "pong") and node in NODE_NAMES
    assert port_80_redirect(LB).stdout == f"308 https://{HOSTNAME}/"
    seen = wait_healthy(load_spec(layer7_deployment.spec_file), 15.0, SilentReporter())
    # 443, 6443, 9345: the port 80 redirect answers itself and lists no nodes
    assert len(seen) == 3 and all(line.endswith(": 3/3 nodes up") for line in seen), seen

    again = layer7_deployment.cli("plan", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert layer7_deployment.plan_lines() == []

    # A new certificate at the same paths: a reload (SIGHUP) of the same process; the
    # established connection stays, new handshakes get the new certificate.
    with tls_connection(ca) as kept:
        assert keepalive_request(kept).split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
        old_ca = new_certificate(layer7_deployment.directory)
        assert layer7_deployment.plan_lines() == ["~ load_balancer.engine"]
        reload = layer7_deployment.cli("up", "--yes")
        assert reload.code == 0, reload.out + reload.err
        assert "reloaded" in reload.out
        assert layer7_deployment.engine_pid() == pid
        assert keepalive_request(kept).split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert https_get(ca, LB)[0] == 200
    stale = curl(
        f"https://{HOSTNAME}/ping", "--cacert", str(old_ca), "--resolve", f"{HOSTNAME}:443:{LB}"
    )
    assert stale.returncode == 60, stale.stderr  # the old certificate is no longer served
    assert layer7_deployment.plan_lines() == []
    versions = [p.name for p in (layer7_deployment.directory / ENGINE_ROOT).glob("v-*")]
    assert versions == [os.readlink(current)]  # the old version was pruned

    # A layer 7 setting (the redirect code) is applied by a reload of the same process too,
    # while a keep-alive connection stays open.
    with tls_connection(ca) as kept:
        assert keepalive_request(kept).split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
        layer7_deployment.write(layer7_spec(redirect_code=301))
        assert layer7_deployment.plan_lines() == ["~ load_balancer.engine"]
        reload = layer7_deployment.cli("up", "--yes")
        assert reload.code == 0, reload.out + reload.err
        assert "reloaded" in reload.out
        assert layer7_deployment.engine_pid() == pid
        deadline = time.monotonic() + 10
        while port_80_redirect(LB).stdout != f"301 https://{HOSTNAME}/":
            assert time.monotonic() < deadline, port_80_redirect(LB).stdout
            time.sleep(0.1)
        assert keepalive_request(kept).split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert https_get(ca, LB)[0] == 200
    assert layer7_deployment.plan_lines() == []

    down = layer7_deployment.cli("down", "--yes")
    assert down.code == 0, down.out + down.err
    assert not procs.alive(pid)
    assert layer7_deployment.our_processes() == []
    assert not layer7_deployment.state_file.exists()
    assert not (layer7_deployment.directory / ".rke2ha" / "existing").exists()
    assert not accepts(443) and not accepts(80)


def test_key_not_matching_the_certificate_is_refused_before_anything_runs(
    layer7_deployment: Deployment,
) -> None:
    folder = layer7_deployment.directory
    good_key = (folder / "tls.key").read_bytes()
    # A valid pair's key, but not the key of tls.crt.
    write_self_signed(folder / "other.crt", folder / "tls.key", HOSTNAME, ca=True)
    layer7_deployment.write(layer7_spec())

    refused = layer7_deployment.cli("up", "--yes")
    assert refused.code == 1, refused.out + refused.err
    assert "load_balancer.tls.key" in refused.err
    assert "does not belong to the certificate" in refused.err
    assert "Traceback" not in refused.err
    assert layer7_deployment.our_processes() == []
    assert not layer7_deployment.state_file.exists()
    assert not (folder / ".rke2ha" / "existing").exists()
    assert not accepts(443)

    # With the right key it runs; a wrong key again touches nothing that runs.
    (folder / "tls.key").write_bytes(good_key)
    assert layer7_deployment.cli("up", "--yes").code == 0
    pid = layer7_deployment.engine_pid()
    current = os.readlink(folder / ENGINE_ROOT / "current")
    write_self_signed(folder / "other.crt", folder / "tls.key", HOSTNAME, ca=True)
    again = layer7_deployment.cli("up", "--yes")
    assert again.code == 1 and "load_balancer.tls.key" in again.err, again.out + again.err
    assert layer7_deployment.engine_pid() == pid and procs.alive(pid)
    assert os.readlink(folder / ENGINE_ROOT / "current") == current
    assert [p.name for p in (folder / ENGINE_ROOT).glob("v-*")] == [current]
    assert https_get(folder / "tls.crt", LB)[0] == 200
