"""The sans-I/O parts: records from the spec, answers, wire handling, ownership plans."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from tests.dns.conftest import BASE_SPEC, merge

from rke2ha.dns.health import HealthState
from rke2ha.dns.hostport import split_host_port
from rke2ha.dns.ownership import Ownership, judge
from rke2ha.dns.publish import Action, NotOwnedError, Observed, plan_publish, plan_unpublish
from rke2ha.dns.records import Record, desired_records
from rke2ha.dns.wire import render, respond
from rke2ha.dns.zone import Zone, build_zone
from rke2ha.errors import InvalidError
from rke2ha.spec import Spec


def spec(**extra: Any) -> Spec:
    return Spec.model_validate(merge(BASE_SPEC, extra))


@pytest.fixture
def zone() -> Zone:
    return build_zone(spec(), serial=7)


def ask(zone: Zone, name: str, rdtype: str, **kw: Any) -> dns.message.Message:
    return zone.answer(dns.message.make_query(name, rdtype), **kw)


def test_answers_by_kind(zone: Zone) -> None:
    a = ask(zone, "RANCHER.example.com", "A")  # names are case-insensitive
    assert a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AA
    assert not a.flags & dns.flags.RA
    assert [r.address for r in a.answer[0]] == ["127.0.20.10"]
    nx = ask(zone, "nope.example.com", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == dns.rdatatype.SOA and nx.authority[0][0].serial == 7
    nodata = ask(zone, "rancher.example.com", "TXT")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    refused = ask(zone, "example.org", "A")
    assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.AA


def test_glue_comes_from_the_listen_address() -> None:
    z = build_zone(spec(dns={"builtin": {"listen": "127.0.20.1:53"}}), serial=1)
    ns = ask(z, "example.com", "NS")
    assert ns.additional[0].name.to_text() == "ns1.example.com."
    assert ns.additional[0][0].address == "127.0.20.1"


def test_transfer_needs_tcp_and_an_allowed_client() -> None:
    z = build_zone(spec(dns={"builtin": {"axfr_allow": ["127.0.20.0/24"]}}), serial=1)
    assert ask(z, "example.com", "AXFR", tcp=True, client="127.0.20.5").rcode() == 0
    denied = ask(z, "example.com", "AXFR", tcp=True, client="127.0.21.5")
    assert denied.rcode() == dns.rcode.REFUSED
    assert ask(z, "example.com", "AXFR", tcp=False, client="127.0.20.5").rcode() == 5


def test_edns_version_and_opcode(zone: Zone) -> None:
    query = dns.message.make_query("rancher.example.com", "A", use_edns=1)
    assert zone.answer(query).rcode() == dns.rcode.BADVERS
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert zone.answer(notify).rcode() == dns.rcode.NOTIMP


def test_truncation_leaves_no_partial_answer() -> None:
    many = [f"127.0.21.{i}" for i in range(1, 60)]
    z = build_zone(spec(load_balancer={"extra_addresses": many}), serial=1)
    query = dns.message.make_query("rancher.example.com", "A")
    wire = render(z.answer(query), 512)
    parsed = dns.message.from_wire(wire)
    assert len(wire) <= 512 and parsed.flags & dns.flags.TC and not parsed.answer
    whole = respond(z, query.to_wire(), tcp=True, client="127.0.0.1")
    assert whole is not None and len(dns.message.from_wire(whole).answer[0]) == 60


def test_garbage_gets_formerr_or_nothing(zone: Zone) -> None:
    assert respond(zone, b"\x12\x34", tcp=False, client="") is None
    reply = respond(zone, b"\x12\x34\x01\x00" + b"\x00\x05" + bytes(6), tcp=False, client="")
    assert reply is not None and reply[:2] == b"\x12\x34"
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("example.com", "SOA"))
    assert respond(zone, response.to_wire(), tcp=False, client="") is None  # never answer QR


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"hostname": "rancher.example.org"}, "is not inside dns.zone"),
        ({"load_balancer": {"address": "lb.example.net"}}, "set dns.record: CNAME"),
        ({"dns": {"record": "CNAME"}}, "is an IP address"),
        ({"load_balancer": {"address": None}}, "load_balancer.address is not set"),
    ],
)
def test_records_that_cannot_exist_are_explained(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        desired_records(spec(**extra))


def test_split_host_port() -> None:
    assert split_host_port("127.0.20.1:5353", 53) == ("127.0.20.1", 5353)
    assert split_host_port("[::1]:5353", 53) == ("::1", 5353)
    assert split_host_port("::1", 53) == ("::1", 53)
    with pytest.raises(ValueError, match="port"):
        split_host_port("h:http", 53)


MARK = '"heritage=rke2ha,rke2ha/cluster=prod"'


def test_ownership_judgement() -> None:
    assert judge(False, (), "prod") is Ownership.FREE
    assert judge(True, (MARK,), "prod") is Ownership.OURS
    assert judge(True, (), "prod") is Ownership.FOREIGN
    assert judge(False, ('"v=spf1 -all"',), "prod") is Ownership.FOREIGN
    assert judge(True, ('"heritage=rke2ha,rke2ha/cluster=dev"',), "prod") is Ownership.OTHER_CLUSTER


def test_plans_follow_ownership() -> None:
    desired = desired_records(spec())
    free = Observed((), None)
    assert plan_publish(desired, free, "prod", adopt=False).action is Action.CREATE
    assert plan_unpublish(desired, free, "prod").action is Action.NONE
    ours = Observed(desired.address, desired.owner)
    assert plan_publish(desired, ours, "prod", adopt=False).action is Action.NONE
    moved = Observed((Record("rancher.example.com.", "A", 60, ("127.0.20.9",)),), desired.owner)
    assert plan_publish(desired, moved, "prod", adopt=False).action is Action.UPDATE
    assert plan_unpublish(desired, moved, "prod").action is Action.DELETE
    stranger = Observed((Record("rancher.example.com.", "A", 300, ("192.0.2.1",)),), None)
    with pytest.raises(NotOwnedError, match=r"192\.0\.2\.1.*left untouched.*--adopt"):
        plan_publish(desired, stranger, "prod", adopt=False)
    assert plan_publish(desired, stranger, "prod", adopt=True).action is Action.ADOPT
    with pytest.raises(NotOwnedError):
        plan_unpublish(desired, stranger, "prod")


def test_health_rise_fall_and_fail_open() -> None:
    state = HealthState(["a", "b"], rise=2, fall=2)
    assert state.serving() == ["a", "b"]
    assert not state.record("a", False)
    assert state.record("a", False)  # second failure: down
    assert state.serving() == ["b"]
    state.record("b", False)
    state.record("b", False)
    assert state.serving() == ["a", "b"]  # none up: serve all rather than nothing
    assert not state.record("a", True) and state.record("a", True)
    assert state.serving() == ["a"]
