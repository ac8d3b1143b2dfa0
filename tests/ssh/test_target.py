"""The top ssh: block, node overrides and bastions, resolved per node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rke2ha.errors import InvalidError
from rke2ha.spec import Spec
from rke2ha.ssh.sudo import as_root, wanted_password
from rke2ha.ssh.target import Endpoint, parse_jump, targets


def _spec(tmp_path: Path, **ssh: Any) -> Spec:
    spec = Spec.model_validate(
        {
            "name": "rr",
            "hostname": "rancher.example.com",
            "provider": "existing",
            "nodes": [
                {"name": "node-1", "address": "10.0.0.1"},
                {
                    "name": "node-2",
                    "address": "10.0.0.2",
                    "ssh": {
                        "host": "n2.example",
                        "user": "root",
                        "port": 2222,
                        "jump_host": "ops@bastion:2200",
                    },
                },
            ],
            "load_balancer": {"address": "10.0.0.9"},
            "dns": {"provider": "manual", "zone": "example.com"},
            "ssh": ssh,
        }
    )
    spec._source_dir = tmp_path
    return spec


def test_defaults_overrides_and_paths(tmp_path: Path) -> None:
    one, two = targets(_spec(tmp_path, user="rke2ha", identity_file="keys/id", known_hosts="kh"))
    assert one.endpoint == Endpoint("10.0.0.1", 22, "rke2ha")
    assert not one.privileged
    assert one.identity_file == tmp_path / "keys/id"
    assert one.known_hosts == tmp_path / "kh"
    assert one.jump is None
    assert (one.connect_timeout, one.command_timeout) == (10.0, 30.0)
    assert two.endpoint == Endpoint("n2.example", 2222, "root")
    assert two.privileged
    assert two.jump == Endpoint("bastion", 2200, "ops")


def test_known_hosts_default_is_the_users(tmp_path: Path) -> None:
    (one, _) = targets(_spec(tmp_path))
    assert one.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert one.endpoint.user == "root"


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("bastion", Endpoint("bastion", 22, "me")),
        ("ops@10.1.1.1:2201", Endpoint("10.1.1.1", 2201, "ops")),
        ("[fd00::1]:2222", Endpoint("fd00::1", 2222, "me")),
        ("fd00::1", Endpoint("fd00::1", 22, "me")),
    ],
)
def test_jump_host_forms(text: str, endpoint: Endpoint) -> None:
    assert parse_jump(text, "me", "ssh.jump_host") == endpoint


@pytest.mark.parametrize("text", ["bastion:99999", "ops@:22", "b:x"])
def test_bad_jump_host_names_the_field(text: str) -> None:
    with pytest.raises(InvalidError, match=r"ssh\.jump_host"):
        parse_jump(text, "me", "ssh.jump_host")


def test_no_ssh_block_is_a_clear_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.ssh = None
    with pytest.raises(InvalidError, match="no ssh: block"):
        targets(spec)


def test_sudo_wrapping_and_prompt_detection() -> None:
    assert as_root("cat /etc/shadow | wc -l", True) == "cat /etc/shadow | wc -l"
    assert as_root("a | b", False) == "sudo -n sh -c 'a | b'"
    assert wanted_password(1, "sudo: a password is required\n")
    assert not wanted_password(1, "cat: x: No such file\n")
    assert not wanted_password(0, "")
