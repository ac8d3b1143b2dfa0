"""Is one RKE2 server ready? Asked from this machine, over real HTTPS, never by sleeping.

Three answers, in this order, each needed before the next server may start
(https://docs.rke2.io/install/ha: start the first server, then join the others one at a
time; joining two at once fails with "too many learner members", rancher/rke2#349):
- the supervisor on 9345 answers `/ping` with `pong` (what a joiner contacts first; k3s
  pkg/server/router.go serves /ping without authentication);
- the apiserver's `/readyz` on 6443 answers 200 to the kubeconfig's client certificate;
- `/api/v1/nodes` lists the node with condition `Ready` `True`.
Certificates are checked against the cluster CA of the kubeconfig. Node addresses are
connected by IP, so only the chain is verified there; the hostname check is
`via_hostname`, through the load balancer (a hostname missing from `tls-san` fails it).
"""

from __future__ import annotations

import http.client
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rke2ha.rke2node.kubeconfig import Credentials

TIMEOUT = 5.0
# The node list of a large cluster runs to megabytes (each node carries its images and
# conditions); it is read whole, up to this bound, beyond which the answer is an error.
MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer
    body: str
    error: str = ""


class Client:
    """HTTPS to the servers with the cluster CA (and the client certificate where asked)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self._contexts: dict[tuple[bool, bool], ssl.SSLContext] = {}

    def _context(self, client: bool, check_hostname: bool) -> ssl.SSLContext:
        cached = self._contexts.get((client, check_hostname))
        if cached is not None:
            return cached
        context = ssl.create_default_context(cadata=self.creds.ca.decode())
        context.check_hostname = check_hostname
        if client:
            # load_cert_chain reads files only: a private folder, gone once loaded.
            with tempfile.TemporaryDirectory(prefix="rke2ha-client-") as folder:
                cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
                cert.write_bytes(self.creds.cert)
                key.touch(mode=0o600)
                key.write_bytes(self.creds.key)
                context.load_cert_chain(cert, key)
        self._contexts[(client, check_hostname)] = context
        return context

    def get(
        self, host: str, port: int, path: str, *, user: bool, server_hostname: str | None = None
    ) -> Answer:
        context = self._context(user, server_hostname is not None)
        conn = TlsNameConnection(host, port, context, server_hostname)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            response = conn.getresponse()
            data = response.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                return Answer(None, "", f"{path} answered more than {MAX_BODY} bytes")
            return Answer(response.status, data.decode(errors="replace"))
        except ssl.SSLCertVerificationError as err:
            return Answer(None, "", f"certificate not accepted: {err.verify_message}")
        except (OSError, http.client.HTTPException) as err:
            return Answer(None, "", str(err) or type(err).__name__)
        finally:
            conn.close()


class TlsNameConnection(http.client.HTTPSConnection):
    """HTTPS to `host` with TLS name `server_hostname` (SNI and the certificate check)."""

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext, server_hostname: str | None
    ) -> None:
        super().__init__(host, port, timeout=TIMEOUT, context=context)
        self._tls_name = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        name = self._tls_name or self.host
        self.sock = self._context.wrap_socket(self.sock, server_hostname=name)  # type: ignore[attr-defined]


def node_ready(body: str, node: str) -> bool | None:
    """Ready condition of `node` in a NodeList; None when the list does not hold it."""
    try:
        listed = json.loads(body)
    except ValueError:
        return None
    for item in listed.get("items") or []:
        if (item.get("metadata") or {}).get("name") != node:
            continue
        conditions = (item.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return None


def waiting_for(client: Client, address: str, node: str) -> str | None:
    """None when the server at `address` passes all three checks; else what it waits for."""
    ping = client.get(address, 9345, "/ping", user=False)
    if ping.status != 200 or ping.body.strip() != "pong":
        return f"9345 /ping: {ping.error or f'HTTP {ping.status} {ping.body.strip()[:60]!r}'}"
    ready = client.get(address, 6443, "/readyz", user=True)
    if ready.status != 200:
        return f"6443 /readyz: {ready.error or f'HTTP {ready.status} {ready.body.strip()[:80]!r}'}"
    # The list, not /nodes/<name>: one call that also works for a reader only allowed to list.
    found = client.get(address, 6443, "/api/v1/nodes", user=True)
    if found.status != 200:
        return f"/api/v1/nodes: {found.error or f'HTTP {found.status}'}"
    listed = node_ready(found.body, node)
    if listed is None:
        return f"node {node} is not registered yet"
    if not listed:
        return f"node {node} is not Ready yet"
    return None


def via_hostname(client: Client, lb_address: str, hostname: str) -> str | None:
    """None when the apiserver answers /readyz at `https://<hostname>:6443` through the load
    balancer with a certificate valid for the hostname; else why not."""
    answer = client.get(lb_address, 6443, "/readyz", user=True, server_hostname=hostname)
    if answer.status == 200:
        return None
    return answer.error or f"HTTP {answer.status} {answer.body.strip()[:80]!r}"
