"""Rule `lb.health`: a check timeout longer than the interval is a warning."""

from __future__ import annotations

from .conftest import of


def test_health_timeout_over_interval_is_a_warning(base, findings) -> None:
    base["load_balancer"]["health"] = {"interval": "1s", "timeout": "3s"}
    found = of(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("warning", "load_balancer.health.timeout")]
