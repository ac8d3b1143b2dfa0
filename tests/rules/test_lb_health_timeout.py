"""Rule `lb.health`: a check timeout longer than the interval; the lab's own health token."""

from __future__ import annotations

from .conftest import of


def test_health_timeout_over_interval_is_a_warning(base, findings) -> None:
    base["load_balancer"]["health"] = {"interval": "1s", "timeout": "3s"}
    found = of(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("warning", "load_balancer.health.timeout")]


def test_lab_health_token_not_made_yet_is_info(base, findings) -> None:
    # The lab writes it at `up`; a missing one is no fault of the spec (as for existing it is).
    base.update(provider="lab")
    for key in ("address",):
        base["load_balancer"].pop(key)
    for node in base["nodes"]:
        node.pop("address")
    base["load_balancer"].update(engine="builtin", health={"token_file": "lab-token"})
    found = of(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("info", "load_balancer.health.token_file")]
