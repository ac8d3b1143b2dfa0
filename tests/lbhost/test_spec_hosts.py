"""`load_balancer.hosts` in the spec: one host, or two sharing a virtual IP (with `vrrp`),
a third refused, and the SSH target of a host built like a node's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2ha.errors import InvalidError
from rke2ha.lbhost.decide import ENGINES
from rke2ha.lbhost.requirements import problems, require
from rke2ha.providers.existing.hosted import HostedEngine, vrrp_password
from rke2ha.specfile import load_spec
from rke2ha.ssh.target import host_targets


def write(tmp_path: Path, **lb: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "rancher",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": f"node-{i}", "address": f"10.0.1.{10 + i}"} for i in (1, 2, 3)],
        "load_balancer": {"engine": "haproxy", "address": "10.0.0.11",
                          "hosts": [{"name": "lb-1", "address": "10.0.0.11"}], **lb},
        "dns": {"provider": "manual", "zone": "example.com"},
        "ssh": {"user": "rke2ha", "known_hosts": "kh"},
    }  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_one_host_is_accepted_and_reached_over_ssh(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, hosts=[
        {"name": "lb-1", "address": "10.0.0.11", "ssh": {"port": 2222, "user": "root"}},
    ]))  # fmt: skip
    assert problems(spec) == []
    (target,) = host_targets(spec)
    assert (target.node, target.endpoint.host, target.endpoint.port) == ("lb-1", "10.0.0.11", 2222)
    assert target.endpoint.user == "root" and target.known_hosts == tmp_path / "kh"


def secret(tmp_path: Path, text: str = "pw123456\n", mode: int = 0o600) -> Path:
    path = tmp_path / "vrrp.secret"
    path.write_text(text)
    path.chmod(mode)
    return path


TWO = [{"name": "lb-1", "address": "10.0.0.11"}, {"name": "lb-2", "address": "10.0.0.12"}]


def test_two_hosts_share_a_virtual_ip_given_a_vrrp_password(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, address="10.0.0.10", hosts=TWO,
                           vrrp={"auth_file": str(secret(tmp_path))}))  # fmt: skip
    assert problems(spec) == []
    assert [t.node for t in host_targets(spec)] == ["lb-1", "lb-2"]
    hosted = HostedEngine.__new__(HostedEngine)
    hosted.targets = {t.node: t for t in host_targets(spec)}
    hosted.pair, hosted.engine = True, ENGINES["haproxy"]
    # Host 1 fully (engine, then keepalived) before host 2 is touched.
    assert hosted.addresses() == [
        "load_balancer.hosts.lb-1", "load_balancer.hosts.lb-1/keepalived",
        "load_balancer.hosts.lb-2", "load_balancer.hosts.lb-2/keepalived",
    ]  # fmt: skip


def test_two_hosts_need_vrrp_and_a_virtual_ip_of_their_own(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, address="10.0.0.11", hosts=TWO))
    by_path = {p.path: p for p in problems(spec)}
    assert set(by_path) == {"load_balancer.vrrp", "load_balancer.address"}
    assert "auth_file" in by_path["load_balancer.vrrp"].fix
    assert "virtual IP" in by_path["load_balancer.address"].message


def test_the_vrrp_password_is_read_from_a_private_file_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, address="10.0.0.10", hosts=TWO,
                 vrrp={"auth_file": str(secret(tmp_path, "pw123456\n", 0o644))})  # fmt: skip
    with pytest.raises(InvalidError) as caught:
        vrrp_password(load_spec(path))
    assert "vrrp.secret" in str(caught.value) and "pw123456" not in str(caught.value)
    path = write(tmp_path, address="10.0.0.10", hosts=TWO,
                 vrrp={"auth_file": str(secret(tmp_path, "a b#c\n"))})  # fmt: skip
    with pytest.raises(InvalidError, match=r"load_balancer\.vrrp\.auth_file") as caught:
        vrrp_password(load_spec(path))
    assert "a b#c" not in str(caught.value)


def test_nginx_on_the_hosts_is_accepted(tmp_path: Path) -> None:
    assert problems(load_spec(write(tmp_path, engine="nginx"))) == []


def test_three_hosts_are_too_many(tmp_path: Path) -> None:
    hosts = [{"name": f"lb-{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)]
    with pytest.raises(InvalidError, match=r"load_balancer\.hosts"):
        load_spec(write(tmp_path, hosts=hosts))


def test_what_this_slice_cannot_do_is_refused_by_field(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, engine="builtin", address="10.0.0.99", layer=7))
    paths = {p.path for p in problems(spec)}
    # Layer 7 is not among them: it works on hosts (the certificate goes with the config).
    assert paths == {"load_balancer.engine", "load_balancer.address"}
    with pytest.raises(InvalidError, match=r"load_balancer\.address 10\.0\.0\.99"):
        require(spec)


def test_validate_exits_1_naming_the_third_host(tmp_path: Path, run_cli: Any) -> None:
    path = write(tmp_path, hosts=[*TWO, {"name": "lb-3", "address": "10.0.0.13"}])
    result = run_cli("validate", "-f", str(path))
    assert result.code == 1, result.out + result.err
    assert "load_balancer.hosts" in result.out and "lb-3" in result.out
    assert "Traceback" not in result.err


def test_validate_exits_1_naming_vrrp_for_two_hosts_without_it(
    tmp_path: Path, run_cli: Any
) -> None:
    path = write(tmp_path, address="10.0.0.10", hosts=TWO)
    result = run_cli("validate", "-f", str(path))
    assert result.code == 1, result.out + result.err
    assert "load_balancer.vrrp" in result.out and "auth_file" in result.out
    assert "Traceback" not in result.err


def test_keepalived_left_from_a_two_host_spec_is_planned_for_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One host listed again: its keepalived (in the state) is observed, so `down`/`up` remove
    it with the record's engine instead of leaving it there unmanaged."""
    from rke2ha.lbhost import remote
    from rke2ha.lbhost.decide import HostFacts, Record, down_steps, sha256
    from rke2ha.providers.base import Facts
    from rke2ha.state import ResourceEntry, State, StateStore

    spec = load_spec(write(tmp_path))
    written = "vrrp config rke2ha wrote\n"
    record = Record("keepalived", False, False, True, False, sha256(written))
    key = "load_balancer.hosts.lb-1/keepalived"
    state = State("rancher", "existing", "me")
    state.resources[key] = ResourceEntry("lb_host", "lb-1 10.0.0.11", "created", record.attrs())
    found = HostFacts(True, sha256(written), None, "enabled", "active", helper_sha="ab")
    monkeypatch.setattr(remote, "read_facts", lambda target, engine, paths=(): found)
    hosted = HostedEngine(spec, state, StateStore(tmp_path / "state", "rancher"))
    facts = Facts(observed={})
    hosted.describe(facts)
    assert facts.observed[key].properties == {
        "engine": "keepalived", "config": "rke2ha's", "service": "enabled, active",
    }  # fmt: skip
    assert facts.notes == []
    steps, _ = down_steps(ENGINES["keepalived"], found, record)
    assert [s.kind for s in steps] == ["stop", "remove_config", "disable", "remove_helper"]
