"""`load_balancer.hosts` in the spec: one host accepted, a second refused for now, and the
SSH target of a host built like a node's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2ha.errors import InvalidError
from rke2ha.lbhost.requirements import problems, require
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


def test_a_second_host_is_not_yet_supported_and_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, hosts=[{"name": "lb-1", "address": "10.0.0.11"},
                                  {"name": "lb-2", "address": "10.0.0.12"}])  # fmt: skip
    with pytest.raises(InvalidError) as caught:
        load_spec(path)
    text = str(caught.value)
    assert "load_balancer.hosts" in text and "lb-2" in text and "not yet supported" in text


def test_three_hosts_are_too_many(tmp_path: Path) -> None:
    hosts = [{"name": f"lb-{i}", "address": f"10.0.0.{i}"} for i in (1, 2, 3)]
    with pytest.raises(InvalidError, match=r"load_balancer\.hosts"):
        load_spec(write(tmp_path, hosts=hosts))


def test_what_this_slice_cannot_do_is_refused_by_field(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, engine="nginx", address="10.0.0.99", layer=7))
    paths = {p.path for p in problems(spec)}
    assert paths == {"load_balancer.engine", "load_balancer.address", "load_balancer.layer"}
    with pytest.raises(InvalidError, match=r"load_balancer\.address 10\.0\.0\.99"):
        require(spec)


def test_validate_exits_1_naming_the_second_host(tmp_path: Path, run_cli: Any) -> None:
    path = write(tmp_path, hosts=[{"name": "lb-1", "address": "10.0.0.11"},
                                  {"name": "lb-2", "address": "10.0.0.12"}])  # fmt: skip
    result = run_cli("validate", "-f", str(path))
    assert result.code == 1, result.out + result.err
    assert "load_balancer.hosts" in result.out and "lb-2" in result.out
    assert "Traceback" not in result.err
