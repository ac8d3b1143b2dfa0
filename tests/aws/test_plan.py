"""`rke2ha.plan`: desired vs observed -> ordered changes, without any cloud."""

from __future__ import annotations

import pytest

from rke2ha.plan import Desired, Observed, PlanError, dependency_order, destroy_plan, diff

RANK = {"net": 0, "lb": 1, "vm": 2, "attach": 3}


def _world() -> list[Desired]:
    return [
        Desired(
            "attach.a", "attach", {"targets": ["vm"]}, ("lb.main", "vm.one"), rebind=("vm.one",)
        ),
        Desired("vm.one", "vm", {"size": "m5", "zone": "a"}, ("net.main",), frozenset({"zone"})),
        Desired("lb.main", "lb", {"scheme": "public"}, ("net.main",)),
        Desired("net.main", "net", {"cidr": "10.0.0.0/16"}),
    ]


def _observed(**overrides: dict[str, object]) -> dict[str, Observed]:
    base = {
        "net.main": Observed("net.main", "net", "n-1", {"cidr": "10.0.0.0/16"}),
        "lb.main": Observed("lb.main", "lb", "lb-1", {"scheme": "public"}),
        "vm.one": Observed("vm.one", "vm", "i-1", {"size": "m5", "zone": "a"}),
        "attach.a": Observed("attach.a", "attach", "t-1", {"targets": ["vm"]}),
    }
    for address, props in overrides.items():
        key = address.replace("_", ".")
        base[key] = Observed(key, base[key].kind, base[key].id, {**base[key].properties, **props})
    return base


def test_everything_new_is_created_in_dependency_order() -> None:
    plan = diff(_world(), {}, kind_rank=RANK)
    assert [(c.symbol, c.address) for c in plan.changes] == [
        ("+", "net.main"),
        ("+", "lb.main"),
        ("+", "vm.one"),
        ("+", "attach.a"),
    ]
    position = {c.address: i for i, c in enumerate(plan.changes)}
    for resource in _world():
        assert all(position[dep] < position[resource.address] for dep in resource.depends_on)
    assert plan.summary == "Plan: 4 to add, 0 to change, 0 to destroy (0 replaced)."


def test_nothing_to_do() -> None:
    plan = diff(_world(), _observed(), kind_rank=RANK)
    assert not plan.has_changes
    assert plan.summary.startswith("No changes.")


def test_update_in_place_and_replace() -> None:
    observed = _observed(lb_main={"scheme": "internal"}, vm_one={"zone": "b"})
    plan = diff(_world(), observed, kind_rank=RANK)
    by_address = {c.address: c for c in plan.changes}
    assert by_address["lb.main"].action == "update"
    assert by_address["lb.main"].diffs[0].describe() == "scheme: internal -> public"
    assert by_address["vm.one"].action == "replace"
    assert by_address["vm.one"].symbol == "-/+"
    assert "zone cannot change in place" in (by_address["vm.one"].reason or "")
    # The attachment follows the replaced instance even though its own properties match.
    assert by_address["attach.a"].action == "update"
    assert by_address["attach.a"].reason == "follows new vm.one"
    assert plan.summary == "Plan: 1 to add, 2 to change, 1 to destroy (1 replaced)."


def test_unwanted_resources_are_deleted_first_dependents_first() -> None:
    observed = _observed()
    observed["vm.two"] = Observed("vm.two", "vm", "i-2", {})
    observed["attach.b"] = Observed("attach.b", "attach", "t-2", {}, depends_on=("vm.two",))
    plan = diff(_world(), observed, kind_rank=RANK)
    assert [(c.symbol, c.address) for c in plan.changes] == [("-", "attach.b"), ("-", "vm.two")]


def test_destroy_plan_goes_in_reverse() -> None:
    plan = destroy_plan(_observed(), kind_rank=RANK)
    assert [c.address for c in plan.changes] == ["attach.a", "vm.one", "lb.main", "net.main"]
    assert plan.summary == "Plan: 0 to add, 0 to change, 4 to destroy (0 replaced)."


def test_json_and_lines() -> None:
    plan = diff(_world(), _observed(lb_main={"scheme": "internal"}), kind_rank=RANK, notes=["n"])
    document = plan.to_json()
    assert document["counts"] == {"create": 0, "update": 1, "replace": 0, "delete": 0}
    assert document["notes"] == ["n"]
    assert plan.lines() == ["  ~ lb.main  (lb-1)", "        scheme: internal -> public"]


def test_cycles_and_unknown_dependencies_are_errors() -> None:
    with pytest.raises(PlanError, match="cycle"):
        dependency_order([Desired("a", "k", {}, ("b",)), Desired("b", "k", {}, ("a",))])
    with pytest.raises(PlanError, match="unknown"):
        dependency_order([Desired("a", "k", {}, ("zzz",))])
