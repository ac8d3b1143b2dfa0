"""Where the requirements come from: one string per document, cited by the rules."""

from __future__ import annotations

TUTORIAL = (
    "Rancher docs: Setting up Infrastructure for a High Availability RKE2 Kubernetes Cluster "
    "(https://ranchermanager.docs.rancher.com/how-to-guides/new-user-guides/"
    "infrastructure-setup/ha-rke2-kubernetes-cluster)"
)
RKE2_HA = "RKE2 docs: High Availability (https://docs.rke2.io/install/ha)"
RKE2_FOR_RANCHER = (
    "Rancher docs: Setting up a High-availability RKE2 Kubernetes Cluster for Rancher "
    "(two listeners: 9345 supervisor, 6443 Kubernetes API)"
)
RANCHER_EXTERNAL_TLS = (
    "Rancher docs: Helm chart options, External TLS Termination (--set tls=external; "
    "https://ranchermanager.docs.rancher.com/getting-started/installation-and-upgrade/"
    "installation-references/helm-chart-options)"
)
RANCHER_HELM_TLS = (
    "Rancher docs: Install Rancher on a Kubernetes cluster, choose your SSL configuration "
    "(ingress.tls.source: rancher | letsEncrypt | secret)"
)
INGRESS_HOST = (
    "Kubernetes API: Ingress rule host must be a lowercase RFC 1123 DNS name; "
    "RFC 1123 §2.1 / RFC 1035 §2.3.1"
)
CNAME_APEX = "RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME cannot share a name with SOA and NS"
TSIG = "RFC 8945 §5.2 (a TSIG key: name, algorithm, base64 secret); BIND 9 ARM: tsig-keygen"
NOTIFY = "RFC 1996 §3 (NOTIFY is sent to the secondaries' addresses); BIND 9 ARM: also-notify"
RECORD_TYPES = "RFC 1035 §3.3.1 (CNAME holds a domain name) and §3.4.1 (A holds an IPv4 address)"
ROUTE53_ALIAS = "AWS docs: Route 53 alias records to an Elastic Load Balancing load balancer"
NLB_LAYER4 = "AWS docs: Network Load Balancers work at layer 4 (TCP/UDP/TLS listeners)"
READYZ_401 = "rancher/rke2#7374, k3s-io/k3s#3576 (RKE2 answers 401 to an anonymous /readyz)"
# rke2ha's own requirements cite what a user has: a README section by its heading (the
# README ships as the package's long description) or a module path in the source tree.
README = "rke2ha README"
HEALTH_DETECTION = (
    f"{README}: rke2ha render (the health check of each port); "
    "HAProxy manual: inter, fall, timeout check"
)
SECRETS = f"{README}: The spec (secrets are files with mode 0600)"
README_SPEC = (
    f"{README}: The spec and Providers (the spec and its provider blocks; "
    "schema in src/rke2ha/spec.py)"
)
README_LAB = f"{README}: The lab (the lab never sends a packet off the machine)"
KEEPALIVED = "keepalived docs: VRRP virtual_ipaddress is shared by two distinct hosts"
RANCHER_LETSENCRYPT = "Rancher docs: Helm chart options, letsEncrypt.email is required"
SPEC_REFERENCE = (
    "rke2ha docs/spec-reference.md (the providers column; data: `used_by` in src/rke2ha/spec.py)"
)
PROXY_PROTOCOL = (
    "PROXY protocol v2 (haproxy.org/download/2.6/doc/proxy-protocol.txt); ingress-nginx "
    "use-proxy-protocol (kubernetes/ingress-nginx docs/user-guide/nginx-configuration/"
    "configmap.md); Traefik entryPoints proxyProtocol.trustedIPs "
    "(https://doc.traefik.io/traefik/routing/entrypoints/#proxyprotocol)"
)
README_HEALTH = f"{README}: Health checks"
RKE2_ANONYMOUS = (
    "rancher/rke2#8137 (Cannot use Anonymous Authenticator Configuration) and its backports "
    "rancher/rke2#8245 (1.33), #8246 (1.32); k3s-io/k3s#12277; Kubernetes KEP-4633 "
    "(anonymous auth for configured endpoints)"
)
HAPROXY_UNIT = (
    "Debian bookworm package haproxy 2.6: /lib/systemd/system/haproxy.service (reload = "
    "`haproxy -c` then SIGUSR2 to the master); rke2ha README: Load balancer on its own machine"
)
