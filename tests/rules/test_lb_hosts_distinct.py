"""Rule `lb.hosts`: two load balancer hosts on one address are refused (names: the schema)."""

from __future__ import annotations

from typing import Any

import pytest

from rke2ha.specfile import SpecSchemaError

from .conftest import of


def _hosts(base: dict[str, Any], first: str, second: str) -> dict[str, Any]:
    base["load_balancer"]["hosts"] = [
        {"name": "lb-1", "address": first},
        {"name": "lb-2", "address": second},
    ]
    base["load_balancer"]["vrrp"] = {"auth_file": "vrrp.pass"}
    base["ssh"] = {"user": "root"}
    return base


def test_same_address_twice_is_an_error(base, findings) -> None:
    errors = of(findings(_hosts(base, "10.0.0.1", "10.0.0.1")), "lb.hosts", "error")
    assert [(f.path, f.message.split(";")[0]) for f in errors] == [
        (
            "load_balancer.hosts[1].address",
            "load_balancer.hosts[1] (lb-2) has the address 10.0.0.1 of load_balancer.hosts[0]",
        )
    ]


def test_two_addresses_pass(base, findings) -> None:
    assert of(findings(_hosts(base, "10.0.0.1", "10.0.0.2")), "lb.hosts") == []


def test_same_name_twice_is_a_schema_error(base, make_spec) -> None:
    document = _hosts(base, "10.0.0.1", "10.0.0.2")
    document["load_balancer"]["hosts"][1]["name"] = "lb-1"
    with pytest.raises(SpecSchemaError, match="load balancer host names must differ"):
        make_spec(document)
