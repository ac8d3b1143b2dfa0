"""`rke2ha check` against a real lab: node emulators, built-in load balancer, built-in DNS.

Healthy, degraded (node killed, frozen, joining) and broken (DNS record wrong, load
balancer down) — each asserting the exact set of failing check ids.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import CliResult
from topology import (
    LB,
    NODES,
    OFFSET,
    LabProcesses,
    details,
    failing_ids,
    health_token,
    lab_spec,
    load_json,
    run_checks,
    statuses,
    wait_for,
    write_spec,
)

from rke2ha.lab.ca import LabCA
from rke2ha.lab.material import LabPki, default_pki_dir, ingress_names
from rke2ha.secretfiles import write_secret
from rke2ha.specfile import load_spec

NODE_PORTS = (80, 443, 6443, 9345)
THROUGH_LB = {
    "lb.port.80",
    "lb.port.443",
    "lb.port.6443",
    "lb.port.9345",
    "http.redirect",
    "tls.certificate",
    "rancher.ping",
    "rancher.redirect",
    "rancher.websocket",
    "lb.spread",
    "registration",
}


def node_checks(name: str) -> set[str]:
    return {f"node.{name}.{port}" for port in NODE_PORTS}


def cli_check(run_cli: Callable[..., CliResult], spec_file: Path, *extra: str) -> CliResult:
    return run_cli("check", "-f", str(spec_file), "--port-offset", str(OFFSET), *extra)


def test_healthy_lab_passes_every_check_quickly(
    healthy_lab: LabProcesses, run_cli: Callable[..., CliResult]
) -> None:
    result = cli_check(run_cli, healthy_lab.spec_file, "--json")
    assert result.code == 0, result.out + result.err
    document = load_json(result.out)
    assert document["ok"] is True
    got = statuses(document)
    expected = {"dns.record", *THROUGH_LB, *(c for n in NODES for c in node_checks(n))}
    assert set(got) == expected
    assert set(got.values()) == {"pass"}
    # About 0.1 s on an idle machine (see the report); bounded generously here because the
    # test machine is shared with other suites.
    assert isinstance(document["seconds"], float) and document["seconds"] < 3.0
    detail = details(document)
    # Without a token a 401 from /readyz passes, and says what it does not know.
    assert "readiness unknown" in detail["node.node-1.6443"]
    assert "3 nodes" in detail["lb.spread"]


def test_table_output_for_people(
    healthy_lab: LabProcesses, run_cli: Callable[..., CliResult]
) -> None:
    result = cli_check(run_cli, healthy_lab.spec_file)
    assert result.code == 0
    assert "rke2ha check: rancher.lab.rke2ha.test" in result.out
    total = 1 + len(THROUGH_LB) + sum(len(node_checks(name)) for name in NODES)  # + dns.record
    assert f"OK: {total} passed, 0 failed, 0 skipped" in result.out


def test_killed_node_fails_exactly_its_own_checks(
    healthy_lab: LabProcesses, run_cli: Callable[..., CliResult]
) -> None:
    asyncio.run(healthy_lab.kill("node-3"))
    try:
        result = cli_check(run_cli, healthy_lab.spec_file, "--json")
        assert result.code == 1
        document = load_json(result.out)
        assert document["ok"] is False
        failed = {c for c, s in statuses(document).items() if s == "fail"}
        assert failed == node_checks("node-3")
        for check in document["checks"]:
            if check["status"] == "fail":
                assert "refused" in check["detail"] and check["rule"] == "check.node.port"
                assert "rke2ha lab restart node-3" in check["fix"]
    finally:
        asyncio.run(healthy_lab.restore("node-3"))


def test_frozen_node_fails_its_checks_within_bounded_time(healthy_lab: LabProcesses) -> None:
    asyncio.run(healthy_lab.freeze("node-2"))
    try:
        started = time.monotonic()
        results = run_checks(healthy_lab.spec_file, timeout=1.0)
        # One run never waits much longer than one probe timeout on a frozen peer.
        assert time.monotonic() - started < 4.0
        assert node_checks("node-2") <= failing_ids(results)
        # Until the load balancer's checks take it out, requests routed to it hang; after
        # interval x fall + timeout only node-2's own checks fail.
        results, elapsed = wait_for(
            healthy_lab.spec_file,
            lambda r: failing_ids(r) == node_checks("node-2"),
            within=8,
            timeout=1.0,
        )
        assert failing_ids(results) == node_checks("node-2"), elapsed
        assert all("no answer" in r.detail for r in results if r.failed)
    finally:
        asyncio.run(healthy_lab.restore("node-2"))


def test_joining_node_readiness_is_unknown_without_a_token_and_not_ready_with_one(
    healthy_lab: LabProcesses,
) -> None:
    healthy_lab.signal("node-1", signal.SIGUSR1)  # the emulator starts joining
    try:
        results, _ = wait_for(
            healthy_lab.spec_file, lambda r: "node.node-1.80" in failing_ids(r), within=5
        )
        by_id = {r.id: r for r in results}
        # Joining: 9345 answers, 6443 answers 401 to anonymous callers, ingress not yet up.
        assert by_id["node.node-1.6443"].status == "pass"
        assert "readiness unknown" in by_id["node.node-1.6443"].detail
        assert by_id["node.node-1.9345"].status == "pass"
        assert {"node.node-1.80", "node.node-1.443"} <= failing_ids(results)
        assert not any(c.startswith(("node.node-2", "node.node-3")) for c in failing_ids(results))

        with_token = {r.id: r for r in run_checks(
            healthy_lab.spec_file, token_file=health_token(healthy_lab.spec_file)
        )}  # fmt: skip
        assert with_token["node.node-1.6443"].status == "fail"
        assert "not ready" in with_token["node.node-1.6443"].detail
        assert with_token["node.node-2.6443"].status == "pass"
        assert with_token["node.node-2.6443"].detail == "apiserver ready: /readyz -> 200"
    finally:
        healthy_lab.signal("node-1", signal.SIGUSR2)  # joined


def test_wrong_dns_record_fails_only_dns_record(healthy_lab: LabProcesses, tmp_path: Path) -> None:
    wrong = write_spec(tmp_path / "wrong.yaml", lab_spec(OFFSET, address="127.0.60.99"))
    healthy_lab.start_dns("dns-wrong", wrong, 54 + OFFSET)
    try:
        results = run_checks(healthy_lab.spec_file, dns_server=f"127.0.60.53:{54 + OFFSET}")
        assert failing_ids(results) == {"dns.record"}
        record = next(r for r in results if r.id == "dns.record")
        assert "127.0.60.99" in record.detail and "publish" in record.fix
    finally:
        healthy_lab.stop("dns-wrong")


def test_load_balancer_down_fails_everything_through_it(healthy_lab: LabProcesses) -> None:
    healthy_lab.stop("lb")
    try:
        results = run_checks(healthy_lab.spec_file)
        assert failing_ids(results) == THROUGH_LB
        port = next(r for r in results if r.id == "lb.port.443")
        assert f"{LB}:{443 + OFFSET} refused" in port.detail
        assert "load balancer" in port.fix
    finally:
        healthy_lab.start_lb()


def test_token_is_never_printed(
    healthy_lab: LabProcesses, run_cli: Callable[..., CliResult]
) -> None:
    token_file = health_token(healthy_lab.spec_file)
    result = cli_check(run_cli, healthy_lab.spec_file, "--json", "--token", str(token_file))
    assert result.code == 0, result.out
    assert token_file.read_text().strip() not in result.out + result.err
    assert details(load_json(result.out))["node.node-3.6443"] == "apiserver ready: /readyz -> 200"


def test_frozen_load_balancer_fails_its_checks_within_the_timeout(
    healthy_lab: LabProcesses,
) -> None:
    healthy_lab.signal("lb", signal.SIGSTOP)
    healthy_lab.frozen.add("lb")
    try:
        started = time.monotonic()
        results = run_checks(healthy_lab.spec_file, timeout=1.0)
        elapsed = time.monotonic() - started
        assert failing_ids(results) == THROUGH_LB
        # Connect succeeds (the kernel accepts), nothing answers: each probe gives up after
        # its timeout, and they run at once, so the run is bounded by a few timeouts.
        assert elapsed < 4.0, elapsed
    finally:
        healthy_lab.signal("lb", signal.SIGCONT)
        healthy_lab.frozen.discard("lb")


def test_expired_certificate_fails_only_tls_certificate(healthy_lab: LabProcesses) -> None:
    spec = load_spec(healthy_lab.spec_file)
    pki = LabPki(default_pki_dir(spec))
    ca = LabCA.load(pki.ca_cert, pki.ca_key)
    valid_cert, valid_key = pki.ingress_cert.read_bytes(), pki.ingress_key.read_bytes()
    now = datetime.now(UTC)
    # Planted with the lab CA; node emulators serve what is there (they never renew).
    ca.issue(
        ingress_names(spec), not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    ).save(pki.ingress_cert, pki.ingress_key)
    try:
        for name in NODES:
            healthy_lab.restart_node(name)
        results, _ = wait_for(
            healthy_lab.spec_file, lambda r: failing_ids(r) == {"tls.certificate"}, within=10
        )
        assert failing_ids(results) == {"tls.certificate"}
        detail = next(r for r in results if r.id == "tls.certificate")
        assert "certificate has expired" in detail.detail and "renew" in detail.fix
    finally:
        pki.ingress_cert.write_bytes(valid_cert)
        write_secret(pki.ingress_key, valid_key)
        for name in NODES:
            healthy_lab.restart_node(name)
