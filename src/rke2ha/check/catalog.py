"""The check families: each one's stable rule id, what it asks for and where that comes from.

Verdicts stamp the rule id and source on every result through `CheckRule`, so a check
never spells either twice and `--json` consumers can key on the rule id.
"""

from __future__ import annotations

from dataclasses import dataclass

from rke2ha.check.result import CheckResult
from rke2ha.rules import sources


@dataclass(frozen=True)
class CheckRule:
    id: str
    summary: str
    source: str

    def passed(self, check_id: str, detail: str) -> CheckResult:
        return CheckResult(check_id, "pass", detail, "", self.id, self.source)

    def failed(self, check_id: str, detail: str, fix: str) -> CheckResult:
        return CheckResult(check_id, "fail", detail, fix, self.id, self.source)

    def skipped(self, check_id: str, detail: str, fix: str) -> CheckResult:
        return CheckResult(check_id, "skip", detail, fix, self.id, self.source)


DNS_RECORD = CheckRule(
    "check.dns.record",
    "the Rancher hostname resolves to the load balancer with the expected record type",
    f"{sources.TUTORIAL} (an A record to the load balancer IP or a CNAME to its hostname)",
)
LB_PORT = CheckRule(
    "check.lb.port",
    "every load balancer port accepts connections and reaches a node",
    f"{sources.TUTORIAL}; {sources.RKE2_FOR_RANCHER}",
)
NODE_PORT = CheckRule(
    "check.node.port",
    "every node answers on each port directly: ingress, apiserver /readyz, supervisor /ping",
    f"{sources.RKE2_HA}; {sources.READYZ_401}",
)
HTTP_REDIRECT = CheckRule(
    "check.http.redirect",
    "port 80 redirects to https://<hostname>/ keeping the path",
    f"{sources.TUTORIAL} (the ingress redirects HTTP to HTTPS)",
)
TLS_CERTIFICATE = CheckRule(
    "check.tls.certificate",
    "the certificate served for the hostname verifies, covers it, has >= 14 days, TLS >= 1.2",
    f"{sources.RANCHER_HELM_TLS}; RFC 6125 §6.4 (SAN matching)",
)
RANCHER_PING = CheckRule(
    "check.rancher.ping",
    "Rancher answers /ping with pong through the load balancer",
    f"{sources.TUTORIAL}; {sources.README}: rke2ha check (Rancher answers /ping -> pong)",
)
RANCHER_REDIRECT = CheckRule(
    "check.rancher.redirect",
    "Rancher's UI through the load balancer does not redirect back to itself (no loop)",
    f"{sources.RANCHER_EXTERNAL_TLS} (the ingress must use the load balancer's forwarded "
    "headers); rancher/rancher#31071, #52316 (302 to the same URL forever); "
    "rancher/dynamiclistener redirect.go (Rancher redirects http to https)",
)
RANCHER_WEBSOCKET = CheckRule(
    "check.rancher.websocket",
    "a websocket to /v3/subscribe opens through the load balancer",
    "RFC 6455 §4.1 (a websocket opens with Upgrade: websocket and Connection: Upgrade); "
    "RFC 9110 §7.6.1 (Connection is hop-by-hop: an L7 hop that drops Upgrade/Connection "
    "breaks Rancher's websockets)",
)
LB_SPREAD = CheckRule(
    "check.lb.spread",
    "every healthy node receives traffic through the load balancer",
    f"{sources.TUTORIAL} (the load balancer sends traffic to all three nodes)",
)
REGISTRATION = CheckRule(
    "check.registration",
    "the fixed registration address serves 9345 /ping and 6443 /readyz",
    f"{sources.RKE2_HA} (fixed registration address); "
    f"{sources.README}: rke2ha render (9345 listens before the node has joined)",
)
LB_PAIR_VIP = CheckRule(
    "check.lb.pair.vip",
    "exactly one of the two load balancer hosts holds the virtual IP",
    "keepalived.conf(5) (acassen/keepalived doc/man/man5/keepalived.conf.5.in: "
    "virtual_ipaddress is added by the MASTER only); RFC 3768 §6.4 (one Master per "
    "virtual router; two when the Backups stop hearing adverts)",
)
LB_PAIR_STANDBY = CheckRule(
    "check.lb.pair.standby",
    "the host without the virtual IP would take it over: keepalived running, not in FAULT, "
    "HAProxy with a node UP behind 443",
    "keepalived.conf(5) (track_script: an unweighted script that fails puts the instance "
    "in FAULT, which cannot become MASTER); HAProxy management guide, `show stat` (haproxy/haproxy "
    "doc/management.txt)",
)
LB_HOST_NODES = CheckRule(
    "check.lb.host.nodes",
    "each load balancer host's HAProxy counts every node as serving on every backend",
    "HAProxy management guide, `show stat` field 17 `status` (haproxy/haproxy "
    "doc/management.txt, 9.1 CSV format)",
)
