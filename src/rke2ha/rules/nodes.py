"""Rules about the server nodes: how many, distinct, one region, spread over zones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.rules.names import aws_zone_region
from rke2ha.spec import Spec

MIN_SERVERS, MAX_SERVERS = 3, 7


def _count(spec: Spec, facts: Facts) -> Iterator[Issue]:
    count = len(spec.nodes)
    if count < MIN_SERVERS:
        yield error(
            "nodes",
            f"{count} server node{'s' * (count != 1)}: etcd quorum is n/2+1, so fewer than "
            f"{MIN_SERVERS} servers tolerate no failure; one node down takes Rancher down",
            f"list {MIN_SERVERS} server nodes (three is the recommended HA size)",
        )
    elif count % 2 == 0:
        yield warning(
            "nodes",
            f"{count} server nodes: an even count tolerates no more failures than "
            f"{count - 1} (quorum is {count // 2 + 1}) and adds one more node that can fail",
            f"use {count - 1} or {count + 1} server nodes",
        )
    if count > MAX_SERVERS:
        yield warning(
            "nodes",
            f"{count} server nodes: every etcd write waits for a majority, so more than "
            f"{MAX_SERVERS} members slows the cluster without a practical gain",
            "keep 3 (or 5) servers and add agent nodes for workload capacity",
        )


def _unique(spec: Spec, facts: Facts) -> Iterator[Issue]:
    names = Counter(node.name for node in spec.nodes)
    addresses = Counter(node.address for node in spec.nodes if node.address)
    seen_name: set[str] = set()
    seen_address: set[str] = set()
    for index, node in enumerate(spec.nodes):
        if names[node.name] > 1 and node.name in seen_name:
            yield error(
                f"nodes[{index}].name",
                f"node name {node.name!r} is used by {names[node.name]} nodes; RKE2 node "
                "names must be unique or the second node cannot join",
                "give every node its own name",
            )
        seen_name.add(node.name)
        if node.address and addresses[node.address] > 1 and node.address in seen_address:
            yield error(
                f"nodes[{index}].address",
                f"address {node.address} is given to {addresses[node.address]} nodes; "
                "one machine counted twice gives no redundancy",
                "give every node the address of its own machine",
            )
        if node.address:
            seen_address.add(node.address)


def _region(spec: Spec, facts: Facts) -> Iterator[Issue]:
    seen: dict[str, str] = {}  # region -> first node found in it
    for index, node in enumerate(spec.nodes):
        if node.region is not None:
            region, path, why = node.region, f"nodes[{index}].region", f"region {node.region}"
        elif node.zone is not None and (zone_region := aws_zone_region(node.zone)) is not None:
            region, path, why = zone_region, f"nodes[{index}].zone", f"zone {node.zone}"
        else:
            continue
        if spec.region is not None and region != spec.region:
            yield error(
                path,
                f"node {node.name} is in {why}, outside the spec's region {spec.region}; "
                "the nodes must share one region (etcd needs low latency between members)",
                f"place {node.name} in {spec.region} (its zones may differ), or correct `region`",
            )
        elif spec.region is None and seen and region not in seen:
            first_region, first_node = next(iter(seen.items()))
            yield error(
                path,
                f"node {node.name} is in {why} but {first_node} is in {first_region}; "
                "the nodes must share one region",
                "place every node in one region and set `region` to it",
            )
        seen.setdefault(region, node.name)


def _zones(spec: Spec, facts: Facts) -> Iterator[Issue]:
    zones = [node.zone for node in spec.nodes]
    if len(zones) < 2 or any(zone is None for zone in zones) or len(set(zones)) > 1:
        return
    yield warning(
        "nodes",
        f"all {len(zones)} nodes are in zone {zones[0]}: one zone outage takes every "
        "server (and Rancher) down at once",
        "spread the nodes over availability zones (racks, rooms) of the same region",
    )


RULES = (
    Rule("nodes.count", "3 (odd, at most 7) server nodes", sources.RKE2_HA, _count),
    Rule("nodes.unique", "distinct node names and addresses", sources.TUTORIAL, _unique),
    Rule("nodes.region", "every node in the spec's region", sources.TUTORIAL, _region),
    Rule("nodes.zones", "nodes spread over zones", sources.TUTORIAL, _zones),
)
