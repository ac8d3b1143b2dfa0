"""The rules never raise, whatever (schema-valid) strings the spec holds."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rke2ha.rules import evaluate_with
from rke2ha.rules.facts import Facts
from rke2ha.specfile import spec_from_source
from rke2ha.yamlsource import YamlSource

from .conftest import BASE, NOW

TEXT = st.text(min_size=0, max_size=40)
# Addresses the schema accepts (it refuses anything else: tests/spec/test_addresses.py).
HOST_NAME = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
ADDRESS = st.one_of(st.ip_addresses().map(str), HOST_NAME)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hostname=TEXT,
    zone=TEXT,
    lb_address=ADDRESS,
    node_addresses=st.lists(ADDRESS, min_size=0, max_size=9),
    node_zones=st.lists(st.one_of(st.none(), TEXT), min_size=0, max_size=9),
    region=st.one_of(st.none(), TEXT),
    record=st.sampled_from(["A", "CNAME"]),
    layer=st.sampled_from([4, 7]),
    engine=st.sampled_from(["builtin", "haproxy", "nginx", "aws-nlb"]),
    provider=st.sampled_from(["lab", "existing", "aws"]),
    ports=st.lists(st.integers(min_value=1, max_value=65535), max_size=6),
)
def test_rules_never_raise(
    hostname,
    zone,
    lb_address,
    node_addresses,
    node_zones,
    region,
    record,
    layer,
    engine,
    provider,
    ports,
):
    data = copy.deepcopy(BASE)
    data.update(hostname=hostname, provider=provider, region=region)
    data["dns"].update(zone=zone, record=record)
    data["load_balancer"] = {
        "layer": layer,
        "engine": engine,
        "address": lb_address,
        "ports": ports,
    }
    data["nodes"] = [
        {"name": f"n{i}", "address": address, "zone": zone_}
        for i, (address, zone_) in enumerate(zip(node_addresses, node_zones, strict=False))
    ]
    spec = spec_from_source(YamlSource(data=data, filename="fuzz.yaml"), Path("."))
    found = evaluate_with(spec, Facts(now=NOW))
    assert all(f.id and f.message and f.fix and f.source for f in found)
    assert any(f.id == "hostname.final" for f in found)
