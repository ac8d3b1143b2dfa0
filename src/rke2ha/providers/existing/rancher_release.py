"""`provider: existing` with `rancher.install`: cert-manager (when needed) and Rancher as
HelmChart manifests on the first server (`rke2ha.render.rancher_helmchart`), then a wait
for `https://<hostname>/ping` to answer `pong` through the load balancer.

One resource, `rancher.release` (kind `rancher_release`), after the kubeconfig (so after
every server is ready). Its properties are the hostname, the replicas and a fingerprint of
the manifests as they are on the first server; the Rancher manifest holds the bootstrap
password, so it is written 0600 and only its digest is ever shown. Rancher answers
`/ping` with `pong` once it serves (Rancher docs, "Checking the health of Rancher":
`curl -k https://<hostname>/ping`). Its certificate comes from Rancher's own CA, Let's
Encrypt or the operator, none of which rke2ha holds, so the wait checks the answer, not
the chain; `rke2ha check` verifies TLS afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import ssl
import time
from dataclasses import replace
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.plan import Change, Desired, Observed
from rke2ha.providers.base import Facts, Reporter
from rke2ha.render.rancher_helmchart import helmchart_manifests
from rke2ha.rke2node import gate, remote
from rke2ha.rke2node.decide import MANIFESTS, sha256, write_step
from rke2ha.secretfiles import PlannedSecret
from rke2ha.spec import Spec
from rke2ha.ssh.connection import connected
from rke2ha.ssh.target import Target
from rke2ha.state import ResourceEntry, State, StateStore

KIND = "rancher_release"
ADDRESS = "rancher.release"
PING_TIMEOUT = 5.0


def _fingerprint(shas: dict[str, str | None]) -> str:
    joined = ";".join(f"{name}={sha or ''}" for name, sha in sorted(shas.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


class RancherRelease:
    def __init__(
        self,
        spec: Spec,
        state: State,
        store: StateStore,
        first: Target,
        *,
        timeout: float = 900.0,
        poll: float = 3.0,
    ) -> None:
        self.spec = spec
        self.state = state
        self.store = store
        self.first = first
        self.timeout = timeout
        self.poll = poll
        self._manifests: dict[str, str] | None = None
        self._password: PlannedSecret | None = None

    @property
    def password(self) -> PlannedSecret:
        """The bootstrap password; a missing file is made by `up` (apply), never by `plan`."""
        if self._password is None:
            self._password = PlannedSecret(
                self.spec.bootstrap_password_file, what="Rancher bootstrap password"
            )
        return self._password

    def manifests(self) -> dict[str, str]:
        if self._manifests is None:
            password = self.password.value
            rancher = self.spec.rancher
            self._manifests = helmchart_manifests(
                self.spec,
                password,
                self._read(rancher.chart_artifact),
                self._read(rancher.cert_manager_chart_artifact),
            )
        return self._manifests

    def _read(self, path: Any) -> bytes | None:
        if path is None:
            return None
        where = self.spec.resolve(path)
        try:
            return where.read_bytes()
        except OSError as err:
            raise InvalidError(
                f"rancher chart artifact {where}: cannot read it ({err.strerror}); fix: point "
                "rancher.chart_artifact / cert_manager_chart_artifact at the chart .tgz"
            ) from None

    def _props(self, fingerprint: str) -> dict[str, Any]:
        return {
            "hostname": self.spec.hostname,
            "replicas": self.spec.rancher.replicas,
            "manifests": fingerprint,
        }

    def desired(self, after: tuple[str, ...] = ()) -> Desired:
        wanted = {name: sha256(text) for name, text in self.manifests().items()}
        return Desired(ADDRESS, KIND, self._props(_fingerprint(dict(wanted))), depends_on=after)

    def describe(self, facts: Facts) -> None:
        entry = self.state.resources.get(ADDRESS)
        if entry is None:
            return
        names = sorted(self.manifests())

        async def read() -> dict[str, str]:
            async with connected(self.first) as conn:
                return (await remote.read_facts(conn, names)).manifest_shas

        found = asyncio.run(read())
        shas: dict[str, str | None] = {name: found.get(name) for name in names}
        facts.observed[ADDRESS] = Observed(
            ADDRESS, KIND, f"https://{self.spec.hostname}", self._props(_fingerprint(shas))
        )

    def apply(self, change: Change, reporter: Reporter) -> None:
        self.password.keep()  # the password in the planned manifests, on disk before them
        self.state.resources[ADDRESS] = ResourceEntry(KIND, self.first.node, "pending", {})
        self.store.save(self.state)

        async def write() -> None:
            async with connected(self.first) as conn:
                for name, text in self.manifests().items():
                    step = write_step(f"{MANIFESTS}/{name}", text, "0600")
                    await remote.run_step(conn, replace(step, input=text))
                    reporter.note(f"{self.first.node}: {MANIFESTS}/{name} written (0600)")

        asyncio.run(write())
        self._wait_pong(reporter)
        self.state.resources[ADDRESS] = ResourceEntry(
            KIND, self.first.node, "created", {"url": f"https://{self.spec.hostname}"}
        )
        self.store.save(self.state)

    def _wait_pong(self, reporter: Reporter) -> None:
        lb = self.spec.load_balancer.address or self.spec.hostname
        started = time.monotonic()
        said = ""
        while True:
            said = ping(lb, self.spec.hostname)
            if said == "pong":
                took = time.monotonic() - started
                reporter.note(f"https://{self.spec.hostname}/ping answers pong after {took:.1f}s")
                return
            if time.monotonic() - started >= self.timeout:
                break
            time.sleep(self.poll)
        raise InvalidError(
            f"Rancher at https://{self.spec.hostname}/ping (through {lb}) did not answer pong "
            f"within {self.timeout:g}s (last: {said}); fix: look at the HelmChart jobs on the "
            f"first server ({self.first.node}: kubectl -n kube-system get helmcharts,jobs; "
            "kubectl -n cattle-system get pods) and run up again"
        )


def ping(address: str, hostname: str) -> str:
    """The body of GET /ping on `address`:443 with SNI and Host `hostname` (chain unchecked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = gate.TlsNameConnection(address, 443, context, hostname)
    try:
        conn.request("GET", "/ping", headers={"Host": hostname})
        response = conn.getresponse()
        body = response.read(256).decode(errors="replace").strip()
        return body if response.status == 200 else f"HTTP {response.status} {body[:60]!r}"
    except (OSError, http.client.HTTPException) as err:
        return str(err) or type(err).__name__
    finally:
        conn.close()
