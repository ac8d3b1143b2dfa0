"""The rule tests' base spec (conftest `base`, provider existing) reshaped for aws or the lab."""

from __future__ import annotations

from typing import Any


def as_aws(base: dict[str, Any]) -> dict[str, Any]:
    """`base` as a complete provider aws spec (names and zones only, an aws block)."""
    base.update(provider="aws", region="us-east-1")
    base["nodes"] = [{"name": f"node-{z}", "zone": f"us-east-1{z}"} for z in "abc"]
    base["load_balancer"] = {"engine": "aws-nlb"}
    base["aws"] = {
        "region": "us-east-1",
        "ami": "ami-1",
        "rke2_version": "v1.33.6+rke2r1",
        "allowed_cidrs": ["203.0.113.0/24"],
    }
    base.pop("rke2")
    return base


def as_lab(base: dict[str, Any]) -> dict[str, Any]:
    """`base` as a complete provider lab spec (addresses assigned by the lab)."""
    base.update(provider="lab", region="local")
    base["nodes"] = [{"name": f"node-{i}", "zone": f"z{i}"} for i in range(3)]
    base["load_balancer"] = {"engine": "builtin"}
    base["dns"] = {"provider": "builtin", "zone": "example.com"}
    return base
