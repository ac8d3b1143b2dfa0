"""Rules about the load balancer: ports, engine, placement, dedication and health checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from rke2ha.durations import format_duration
from rke2ha.healthplan import APISERVER_PORT, readyz_probe
from rke2ha.lbhost import requirements as lbhost_requirements
from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, info, warning
from rke2ha.spec import Spec

MAX_DETECTION_SECONDS = 30.0
_REQUIRED_PORTS = {80: "HTTP, redirected to HTTPS by the ingress", 443: "HTTPS to Rancher"}
_REGISTRATION_PORTS = {6443: "the Kubernetes API", 9345: "the RKE2 supervisor (node joins)"}


def _ports(spec: Spec, facts: Facts) -> Iterator[Issue]:
    ports = spec.load_balancer.ports
    for port, what in _REQUIRED_PORTS.items():
        if port not in ports:
            yield error(
                "load_balancer.ports",
                f"port {port} ({what}) is not forwarded; users reach Rancher through it",
                f"add {port} to load_balancer.ports",
            )
    for port, what in _REGISTRATION_PORTS.items():
        if port not in ports:
            yield warning(
                "load_balancer.ports",
                f"port {port} ({what}) is not forwarded, so servers have no fixed "
                "registration address and must join through one node's own address",
                f"add {port} to load_balancer.ports",
            )
    counts = Counter(ports)
    seen: set[int] = set()
    for index, port in enumerate(ports):
        if counts[port] > 1 and port in seen:
            yield error(
                f"load_balancer.ports[{index}]",
                f"port {port} is listed {counts[port]} times; an engine cannot bind it twice",
                "list each port once",
            )
        seen.add(port)


def _engine_layer(spec: Spec, facts: Facts) -> Iterator[Issue]:
    lb = spec.load_balancer
    if lb.engine == "aws-nlb" and lb.layer == 7:
        yield error(
            "load_balancer.layer",
            "engine aws-nlb is a layer-4 load balancer; it cannot terminate TLS for HTTP "
            "and forward X-Forwarded-* headers",
            "use layer: 4 with aws-nlb (TCP on 443, TLS ends at the ingress), or an engine "
            "that does layer 7 (haproxy, nginx, builtin)",
        )


def _on_node(spec: Spec, facts: Facts) -> Iterator[Issue]:
    lb = spec.load_balancer
    nodes = {node.address: node.name for node in spec.nodes if node.address}
    candidates = [("load_balancer.address", lb.address)]
    candidates += [
        (f"load_balancer.extra_addresses[{i}]", a) for i, a in enumerate(lb.extra_addresses)
    ]
    if lb.pair is not None:
        candidates += [("load_balancer.pair.primary", lb.pair.primary)]
        candidates += [("load_balancer.pair.standby", lb.pair.standby)]
    for path, address in candidates:
        if address is not None and address in nodes:
            yield error(
                path,
                f"load balancer address {address} is node {nodes[address]}'s address: when "
                "that node fails, the load balancer fails with it and Rancher is unreachable",
                "run the load balancer on its own host (or a VRRP virtual IP of a load "
                "balancer pair) with an address no node uses",
            )


def _dedicated(spec: Spec, facts: Facts) -> Iterator[Issue]:
    shared = spec.load_balancer.shared_with
    if shared:
        yield warning(
            "load_balancer.shared_with",
            f"the load balancer also serves {', '.join(shared)}; when another application's "
            "ingress configuration reloads, Rancher's websockets break",
            "give Rancher its own load balancer and remove load_balancer.shared_with",
        )


def _health(spec: Spec, facts: Facts) -> Iterator[Issue]:
    health = spec.load_balancer.health
    for field, value in (("interval", health.interval), ("timeout", health.timeout)):
        if value <= 0:
            yield error(
                f"load_balancer.health.{field}",
                f"health {field} 0: "
                + (
                    "the load balancer would check every node without pause"
                    if field == "interval"
                    else "every check would fail before a node could answer"
                ),
                f"set load_balancer.health.{field} above 0 (e.g. 1s)",
            )
    if 0 < health.interval < health.timeout:
        yield warning(
            "load_balancer.health.timeout",
            f"health timeout {format_duration(health.timeout)} is longer than the interval "
            f"{format_duration(health.interval)}: a slow node's check is still running when "
            "the next one is due, so checks fall behind their interval",
            "set timeout at or below interval (e.g. interval: 2s, timeout: 1s)",
        )
    detection = health.interval * health.fall + health.timeout
    if detection > MAX_DETECTION_SECONDS:
        yield warning(
            "load_balancer.health",
            f"a dead node is detected only after interval x fall + timeout = "
            f"{format_duration(detection)} (over {format_duration(MAX_DETECTION_SECONDS)}); "
            "until then a third of connections go to it",
            "shorten interval or timeout, or lower fall (e.g. interval: 2s, fall: 3)",
        )
    if APISERVER_PORT in spec.load_balancer.ports or 9345 in spec.load_balancer.ports:
        yield from _readyz(spec)
    yield from _token_file(spec, facts)


def _readyz(spec: Spec) -> Iterator[Issue]:
    statuses = readyz_probe(spec).ok_statuses
    given = spec.load_balancer.health.readyz_status is not None
    if 200 not in statuses:
        yield error(
            "load_balancer.health.readyz_status",
            f"the 6443 /readyz check accepts {list(statuses)} but not 200, the answer of a "
            "ready apiserver: every ready server would be marked down",
            "include 200 in readyz_status (or remove it to use the default)",
        )
    elif given and 401 not in statuses and not spec.readyz_requires_200:
        yield error(
            "load_balancer.health.readyz_status",
            f"the 6443 /readyz check accepts only {list(statuses)}, but RKE2 answers 401 to "
            "the load balancer's anonymous request: every RKE2 server would be marked down",
            "set load_balancer.health.token_file (a bearer token for the check) or "
            "rke2.anonymous_health: true, or add 401 to readyz_status",
        )


def _token_file(spec: Spec, facts: Facts) -> Iterator[Issue]:
    path = spec.health_token_file
    if path is None:
        return
    fact = facts.file(path)
    if not fact.exists and spec.provider == "lab":
        # The lab makes its health token at `up` (rke2ha.lab.material), as its certificates.
        yield info(
            "load_balancer.health.token_file",
            f"the lab's health token {path}: `rke2ha up` makes it (mode 0600)",
            "nothing to do; it is checked like any other token file once it exists",
        )
    elif not fact.exists or not fact.is_file:
        yield error(
            "load_balancer.health.token_file",
            f"health token file {path} does not exist; the 6443 check cannot authenticate",
            f"write a bearer token allowed to GET /readyz to {path} (mode 0600)",
        )
    elif not fact.private:
        yield error(
            "load_balancer.health.token_file",
            f"health token file {path} is readable by others (mode {fact.mode or 0:o}); "
            "rke2ha refuses to read such secret files",
            f"chmod 600 {path}",
        )


def _pair(spec: Spec, facts: Facts) -> Iterator[Issue]:
    pair = spec.load_balancer.pair
    if pair is None:
        return
    if pair.primary == pair.standby:
        yield error(
            "load_balancer.pair.standby",
            f"primary and standby are the same host ({pair.primary}): no failover",
            "name two different load balancer hosts",
        )
    if spec.load_balancer.address in (pair.primary, pair.standby):
        yield error(
            "load_balancer.address",
            f"the virtual IP {spec.load_balancer.address} is also a load balancer host's own "
            "address; VRRP moves the virtual IP between hosts, it cannot be one of them",
            "pick an unused address in the same subnet for load_balancer.address",
        )


# Written by `rke2ha render` beside values.yaml; RKE2 applies it from its manifests directory.
INGRESS_CONFIG = "rancher/ingress-helmchartconfig.yaml"
RKE2_MANIFESTS = "/var/lib/rancher/rke2/server/manifests/"


def _send_proxy(spec: Spec, facts: Facts) -> Iterator[Issue]:
    """PROXY protocol works only in pairs: the load balancer sends it, the ingress expects it.

    A connection with the header to an ingress that does not expect it is garbage to it; one
    without the header to an ingress that does is refused. Health checks are connections
    too, so they send the header wherever the traffic does (README: Health checks).
    """
    lb = spec.load_balancer
    if not lb.send_proxy:
        return
    if lb.layer == 7:
        yield error(
            "load_balancer.send_proxy",
            "send_proxy is for layer 4: at layer 7 the load balancer speaks HTTP to the "
            "nodes and passes the client address in X-Forwarded-For, so no request would "
            "carry the PROXY header the ingress is then configured to expect",
            "remove load_balancer.send_proxy (or use layer: 4)",
        )
        return
    expects = (
        'ingress-nginx `use-proxy-protocol: "true"`'
        if spec.ingress == "nginx"
        else "Traefik `ports.web/websecure.proxyProtocol.trustedIPs` with the load balancer "
        "addresses"
    )
    yield info(
        "load_balancer.send_proxy",
        "every connection to the nodes' 80 and 443, health checks included, starts with a "
        "PROXY v2 header; the ingress must expect it (" + expects + "), or it refuses "
        "them all, and an ingress that expects it refuses a load balancer that does not send "
        "it",
        f"copy {INGRESS_CONFIG} (from `rke2ha render`, it sets {expects}) to "
        f"{RKE2_MANIFESTS} on every server before the load balancer sends PROXY",
    )


def _hosts(spec: Spec, facts: Facts) -> Iterator[Issue]:
    for problem in lbhost_requirements.problems(spec):
        yield error(problem.path, problem.message, problem.fix)


RULES = (
    Rule(
        "lb.ports",
        "80 and 443 (and 6443, 9345) forwarded",
        f"{sources.TUTORIAL}; {sources.RKE2_FOR_RANCHER}",
        _ports,
    ),
    Rule("lb.engine_layer", "engine can do the layer", sources.NLB_LAYER4, _engine_layer),
    Rule("lb.on_node", "load balancer not on a node", sources.TUTORIAL, _on_node),
    Rule("lb.dedicated", "load balancer serves Rancher alone", sources.TUTORIAL, _dedicated),
    Rule(
        "lb.health",
        "health checks that detect failure and match RKE2",
        f"{sources.READYZ_401}; {sources.HEALTH_DETECTION}",
        _health,
    ),
    Rule("lb.pair", "a load balancer pair of two hosts", sources.KEEPALIVED, _pair),
    Rule("lb.hosts", "load balancer hosts rke2ha can set up", sources.HAPROXY_UNIT, _hosts),
    Rule(
        "lb.send_proxy",
        "PROXY protocol sent only to an ingress that expects it",
        f"{sources.PROXY_PROTOCOL}; {sources.README_HEALTH}",
        _send_proxy,
    ),
)
