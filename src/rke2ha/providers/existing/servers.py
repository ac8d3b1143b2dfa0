"""`provider: existing` with `rke2.install`: RKE2 on every server node, over SSH.

One resource per node, `rke2.servers.<name>` (kind `rke2_server`), with what can be read
back from the node: the installed release, the fingerprint of its config.yaml and
authentication config (the bytes `rke2ha.render.rke2` renders), and the unit's state.
Each node depends on the one before it, so `up` takes them strictly in spec order, one at
a time, and a node's change ends only when its gate passes (`rke2node.gate`: 9345 /ping,
/readyz, node Ready): the second server is not touched before the first is ready, and so
on (parallel joins fail, rancher/rke2#349). Then `kubeconfig` (kind `kubeconfig`): RKE2's
rke2.yaml from the first server, for use through the load balancer, mode 0600 beside the
state.

Every step on a node is recorded in its state entry (`pending`, with the step) before it
runs and after; the entry becomes `created` once the gate passed. A rerun reads the nodes
again and continues: what is in place is not redone, and the server recorded as the first
stays the first. `down` leaves RKE2 alone unless asked (`--uninstall-rke2`), and then runs
rke2-uninstall.sh only where rke2ha ran install.sh.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.plan import Change, Desired, Observed, Plan
from rke2ha.providers.base import Facts, Reporter
from rke2ha.render.ingress import INSTALLED_NAME, ingress_files
from rke2ha.render.rke2 import render_authentication_config, render_server_config
from rke2ha.rke2node import gate, remote
from rke2ha.rke2node.artifacts import INSTALLER, Artifact, installer, verified
from rke2ha.rke2node.decide import (
    NodeFacts,
    NodeFiles,
    Step,
    airgap_install_command,
    facts_fingerprint,
    files_fingerprint,
    foreign_refusal,
    online_install_command,
    token_refusal,
    uninstall_command,
    up_steps,
    upgrade_refusal,
)
from rke2ha.rke2node.kubeconfig import (
    Credentials,
    credentials,
    has_context,
    merge,
    rewrite,
    write_private,
)
from rke2ha.secretfiles import PlannedSecret
from rke2ha.spec import Spec
from rke2ha.ssh.connection import connected
from rke2ha.ssh.target import Target, targets
from rke2ha.state import ResourceEntry, State, StateStore, Status

KIND = "rke2_server"
KUBE_KIND = "kubeconfig"
PREFIX = "rke2.servers."
KUBECONFIG = "kubeconfig"
WANTED_SERVICE = "enabled, active, ready"
SPEC_LABEL = "the spec (rke2ha up, provider existing)"
READY_TIMEOUT = 900.0  # a real first server pulls no images air-gapped, but etcd and
POLL = 2.0  # the static pods take minutes on small machines
# RKE2's own messages for a token the cluster does not accept; a line merely containing the
# word "token" is not one. The joiner checks the CA hash in a secure token (k3s-io/k3s
# pkg/clientaccess/token.go: "token CA hash does not match the Cluster CA certificate hash");
# a server whose etcd data was made with another token (k3s-io/k3s pkg/cluster/storage.go:
# "bootstrap data already found and encrypted with different token").
TOKEN_SIGNS = (
    "token CA hash does not match",
    "bootstrap data already found and encrypted with different token",
)
# The supervisor answers a wrong password with 401 on its /v1-rke2/ paths ("failed to
# validate server configuration: https://<server>:9345/v1-rke2/config: 401 Unauthorized",
# rancher/rke2#3656).
SUPERVISOR_PATH = "/v1-rke2/"
UNAUTHORIZED = "401 Unauthorized"
# A server refused for its token exits and is started again by the unit (Restart=always)
# for ever: while waiting, its fatal lines are read this often, so the refusal is reported
# at once instead of after READY_TIMEOUT.
REFUSAL_EVERY = 5.0


def refused_for_token(journal: str) -> bool:
    """Whether a line of the journal is one of RKE2's refusals of the join token."""
    return any(
        any(sign in line for sign in TOKEN_SIGNS)
        or (SUPERVISOR_PATH in line and UNAUTHORIZED in line)
        for line in journal.splitlines()
    )


def address(node: str) -> str:
    return PREFIX + node


def kubeconfig_path(spec: Spec) -> Path:
    return spec.state_dir / f"{spec.name}.kubeconfig"


class Rke2Servers:
    def __init__(
        self,
        spec: Spec,
        state: State,
        store: StateStore,
        *,
        merge_kubeconfig: bool = False,
        uninstall: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        poll: float = POLL,
        home_kubeconfig: Path | None = None,
    ) -> None:
        if spec.rke2.version is None:
            # The rules refuse this before; a caller that skipped them gets the same line.
            raise InvalidError(
                f"rke2.version: rke2.install: {spec.rke2.install} needs the RKE2 release to "
                "install; fix: set rke2.version (e.g. v1.33.6+rke2r1)"
            )
        self.spec = spec
        self.version: str = spec.rke2.version
        self.state = state
        self.store = store
        self.merge_kubeconfig = merge_kubeconfig
        self.uninstall = uninstall
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.home_kubeconfig = home_kubeconfig or Path("~/.kube/config").expanduser()
        self.targets: dict[str, Target] = {t.node: t for t in targets(spec)}
        self.names = [node.name for node in spec.nodes]
        self.facts: dict[str, NodeFacts] = {}
        self._files: dict[str, NodeFiles] = {}
        self._kubeconfig_text: str | None = None
        self._ingress_skipped: dict[str, str] = {}
        self._token: PlannedSecret | None = None

    # ---- what the spec asks for ------------------------------------------------------------

    @property
    def token(self) -> PlannedSecret:
        """The cluster token; a missing rke2.token_file is made by `up` (`keep`), never
        by `plan`."""
        if self._token is None:
            self._token = PlannedSecret(self.spec.rke2_token_file, what="RKE2 token")
        return self._token

    def files(self, node: str) -> NodeFiles:
        if node not in self._files:
            token = self.token.value
            index = self.names.index(node)
            config = render_server_config(self.spec, SPEC_LABEL, index, token)
            authn = (
                render_authentication_config(SPEC_LABEL)
                if self.spec.rke2.anonymous_health
                else None
            )
            rendered, self._ingress_skipped = ingress_files(self.spec, SPEC_LABEL)
            manifests = {INSTALLED_NAME: next(iter(rendered.values()))} if rendered else {}
            self._files[node] = NodeFiles(config, authn, manifests)
        return self._files[node]

    def addresses(self) -> list[str]:
        return [address(n) for n in self.names]

    def desired(self, after: tuple[str, ...] = ()) -> list[Desired]:
        """The nodes in spec order, the first after `after` (the load balancer: joiners
        register through it), then the kubeconfig."""
        wanted: list[Desired] = []
        before: tuple[str, ...] = after
        for name in self.names:
            props = {
                "version": self.version,
                "config": files_fingerprint(self.files(name)),
                "service": WANTED_SERVICE,
            }
            wanted.append(Desired(address(name), KIND, props, depends_on=before))
            before = (address(name),)
        wanted.append(Desired(KUBECONFIG, KUBE_KIND, self._kube_props(), depends_on=before))
        return wanted

    def _kube_props(self) -> dict[str, str]:
        return {
            "server": f"https://{self.spec.hostname}:6443",
            "context": self.spec.name,
            "file": str(kubeconfig_path(self.spec)),
        }

    # ---- what is there -----------------------------------------------------------------------

    def _first_recorded(self) -> str | None:
        for key, entry in self.state.resources.items():
            if entry.kind == KIND and entry.attrs.get("first"):
                return key[len(PREFIX) :]
        return None

    def describe(self, facts: Facts) -> None:
        first = self._first_recorded()
        if first is not None and first != self.names[0]:
            raise InvalidError(
                f"the cluster was started on {first} (state file), but nodes[0] is now "
                f"{self.names[0]}; a second first server would start a second cluster; "
                f"fix: put {first} first in nodes again"
            )
        for name in self.names:
            found = _run(self._read(name))
            self.facts[name] = found
            key = address(name)
            entry = self.state.resources.get(key)
            if found.version is None and entry is None:
                continue
            if entry is not None and entry.status == "pending":
                facts.resumed.append(key)
            service = f"{'enabled' if found.enabled else 'disabled'}, {found.active}"
            if entry is not None and entry.status == "created" and found.running:
                service += ", ready"
            facts.observed[key] = Observed(
                key,
                KIND,
                f"{name} {self.targets[name].endpoint.host}",
                {
                    "version": found.version or "none",
                    "config": facts_fingerprint(found),
                    "service": service,
                },
            )
        entry = self.state.resources.get(KUBECONFIG)
        if entry is not None and kubeconfig_path(self.spec).is_file():
            facts.observed[KUBECONFIG] = Observed(
                KUBECONFIG, KUBE_KIND, str(kubeconfig_path(self.spec)), dict(entry.attrs)
            )

    async def _read(self, name: str) -> NodeFacts:
        async with connected(self.targets[name]) as conn:
            return await remote.read_facts(conn, sorted(self.files(name).manifests))

    def refusals(self) -> list[str]:
        """One line per node that runs another release than rke2.version, that runs an RKE2
        rke2ha did not install with another config, or whose etcd data was made with another
        token than the spec's."""
        lines = []
        for name, found in self.facts.items():
            if found.version is not None and found.version != self.version:
                lines.append(upgrade_refusal(name, found.version, self.version))
            elif (foreign := self._foreign(name, found)) is not None:
                lines.append(foreign)
            elif (refused := token_refusal(name, found, self.files(name))) is not None:
                lines.append(refused)
        return lines

    def _foreign(self, name: str, found: NodeFacts) -> str | None:
        recorded = address(name) in self.state.resources
        return foreign_refusal(name, found, self.files(name), recorded)

    def explain(self, plan: Plan) -> None:
        """Each node change's line names its steps; a refused upgrade says so. An ingress
        config `render` skips is a note: RKE2 would be installed without it."""
        installs = any(c.kind == KIND and c.action != "delete" for c in plan.changes)
        if installs and self.token.missing:
            plan.notes.append(
                f"{self.spec.rke2_token_file} does not exist yet: the configs carry a new "
                "cluster token, which `up` writes there (mode 0600) before any node changes"
            )
        for path, why in self._ingress_skipped.items():
            note = f"RKE2 is installed without {path}: {why}"
            if installs and note not in plan.notes:
                plan.notes.append(note)
        for index, change in enumerate(plan.changes):
            if change.kind != KIND or change.action == "delete":
                continue
            name = change.address[len(PREFIX) :]
            found = self.facts.get(name)
            if found is None:
                continue
            if found.version is not None and found.version != self.version:
                why = f"refused: upgrades are not supported yet ({found.version} -> {self.version})"
            elif self._foreign(name, found) is not None:
                why = "refused: RKE2 installed by someone else, with another config"
            elif token_refusal(name, found, self.files(name)) is not None:
                why = "refused: its etcd data was made with another token than rke2.token_file"
            else:
                steps = up_steps(name, found, self.files(name), self.version, self._uploads)
                what = "; ".join(s.what for s in steps) or "nothing to change"
                why = f"on {name}: {what}; then wait until ready"
            plan.changes[index] = replace(change, reason=why)

    @property
    def _airgap(self) -> bool:
        return self.spec.rke2.install == "airgap"

    @property
    def _uploads(self) -> bool:
        """Air-gap uploads every artifact; online uploads install.sh when the artifacts
        folder holds one (else the node fetches it from get.rke2.io)."""
        airgap = self.spec.rke2.airgap
        if self._airgap or airgap is None:
            return self._airgap
        return (self.spec.resolve(airgap.artifacts) / INSTALLER).is_file()

    # ---- up -------------------------------------------------------------------------------

    def check_before_apply(self, plan: Plan) -> list[Artifact]:
        """Refused upgrades and the artifacts' sums, before anything on any node changes."""
        refused = self.refusals()
        if refused:
            raise InvalidError("\n".join(refused))
        self.token.keep()  # the token the plan's configs carry, on disk before any node has it
        needs = any(
            c.kind == KIND
            and c.action != "delete"
            and self.facts.get(c.address[len(PREFIX) :])
            and self.facts[c.address[len(PREFIX) :]].version is None
            for c in plan.changes
        )
        airgap = self.spec.rke2.airgap
        if not needs or airgap is None or not self._uploads:
            return []
        folder = self.spec.resolve(airgap.artifacts)
        return verified(folder) if self._airgap else [installer(folder)]

    def apply(self, change: Change, reporter: Reporter, artifacts: list[Artifact]) -> None:
        if change.kind == KUBE_KIND:
            self._apply_kubeconfig(reporter)
            return
        name = change.address[len(PREFIX) :]
        _run(self._apply_node(name, reporter, artifacts))

    async def _apply_node(self, name: str, reporter: Reporter, artifacts: list[Artifact]) -> None:
        index = self.names.index(name)
        # The servers before this one must be ready first, also when an earlier run
        # stopped before their gate: never two joins at once.
        for earlier in self.names[:index]:
            await self._gate(earlier, reporter, quiet=True)
        async with connected(self.targets[name]) as conn:
            found = await remote.read_facts(conn, sorted(self.files(name).manifests))
            folder: str | None = None
            # Read again: the node may have changed since the plan.
            if (foreign := self._foreign(name, found)) is not None:
                raise InvalidError(foreign)
            steps = up_steps(name, found, self.files(name), self.version, self._uploads)
            installed = bool(self._attrs(name).get("installed"))
            for step in steps:
                self._save(name, "pending", step=f"{step.kind}: started", installed=installed)
                started = time.monotonic()
                if step.kind == "upload":
                    folder = await remote.upload(conn, artifacts)
                elif step.kind == "verify":
                    if folder is None:  # the upload of this run is where the sums apply
                        raise InvalidError(f"node {name}: nothing uploaded to check; run up again")
                    await remote.verify(conn, folder, artifacts)
                elif step.kind == "install":
                    # Recorded before install.sh runs: a run killed during it still
                    # leaves `down --uninstall-rke2` the right to clean up.
                    installed = True
                    self._save(name, "pending", step="install: started", installed=True)
                    if self._airgap and folder is not None:
                        command = airgap_install_command(folder)
                    else:
                        local = f"{folder}/{INSTALLER}" if folder is not None else None
                        command = online_install_command(self.version, local)
                    try:
                        await remote.run_step(conn, Step("install", step.what, command))
                    finally:
                        if folder is not None:
                            await remote.remove(conn, folder)
                else:
                    await remote.run_step(conn, step)
                self._save(name, "pending", step=f"{step.kind}: done", installed=installed)
                reporter.note(f"{name}: {step.what} ({time.monotonic() - started:.1f}s)")
        await self._gate(name, reporter)
        self._save(name, "created", step="ready", installed=installed)

    async def _credentials(self) -> Credentials | None:
        if self._kubeconfig_text is None:
            first = self.names[0]
            async with connected(self.targets[first]) as conn:
                self._kubeconfig_text = await remote.kubeconfig(conn)
        if self._kubeconfig_text is None:
            return None
        return credentials(self._kubeconfig_text, f"{self.names[0]}:/etc/rancher/rke2/rke2.yaml")

    async def _gate(self, name: str, reporter: Reporter, quiet: bool = False) -> None:
        node = next(n for n in self.spec.nodes if n.name == name)
        where = node.address or self.targets[name].endpoint.host
        started = time.monotonic()
        deadline = started + self.ready_timeout
        waiting = "the first server's kubeconfig (/etc/rancher/rke2/rke2.yaml)"
        client: gate.Client | None = None
        since = await self._clock(name)
        look_again = started + REFUSAL_EVERY
        while True:
            if client is None:
                creds = await self._credentials()
                client = gate.Client(creds) if creds is not None else None
            if client is not None:
                said = await asyncio.to_thread(gate.waiting_for, client, where, name)
                if said is None:
                    if not quiet:
                        took = time.monotonic() - started
                        reporter.note(
                            f"{name}: ready (9345 /ping, /readyz, node Ready) after {took:.1f}s"
                        )
                    return
                waiting = said
            if time.monotonic() >= deadline:
                break
            if time.monotonic() >= look_again:
                look_again = time.monotonic() + REFUSAL_EVERY
                refused = await self._refused_for_token(name, since)
                if refused is not None:
                    raise refused
            await asyncio.sleep(self.poll)
        raise await self._never_ready(name, waiting)

    async def _clock(self, name: str) -> str:
        async with connected(self.targets[name]) as conn:
            return await remote.clock(conn)

    async def _refused_for_token(self, name: str, since: str) -> InvalidError | None:
        async with connected(self.targets[name]) as conn:
            fatal = await remote.fatal_since(conn, since)
        if not refused_for_token(fatal):
            return None
        return InvalidError(
            f"node {name}: rke2-server was refused for its token and restarts in vain; "
            f"its journal says:\n{fatal}\n{self._token_fix(name)}"
        )

    def _token_fix(self, name: str) -> str:
        return (
            f"fix: {name} was refused by the cluster: its token is not the cluster's; the "
            f"token in {self.spec.rke2_token_file} must be the cluster's: the one the first "
            "server was installed with, or the new one after `rke2 token rotate`"
        )

    async def _never_ready(self, name: str, waiting: str) -> InvalidError:
        async with connected(self.targets[name]) as conn:
            said = await remote.journal(conn)
        fix = (
            f"fix: read the journal on {name} (journalctl -u rke2-server), correct the cause, "
            "run up again"
        )
        if refused_for_token(said):
            fix = self._token_fix(name)
        return InvalidError(
            f"node {name} did not become ready within {self.ready_timeout:g}s (still waiting "
            f"for {waiting}){said}\n{fix}"
        )

    def _apply_kubeconfig(self, reporter: Reporter) -> None:
        async def fetch() -> str | None:
            self._kubeconfig_text = None
            await self._credentials()
            return self._kubeconfig_text

        text = _run(fetch())
        if text is None:
            raise InvalidError(
                f"node {self.names[0]}: /etc/rancher/rke2/rke2.yaml is missing although the "
                "server is ready; fix: check that rke2-server runs there, then run up again"
            )
        ours = rewrite(text, self.spec.name, self.spec.hostname, "rke2.yaml")
        path = kubeconfig_path(self.spec)
        write_private(path, ours)
        reporter.note(f"kubeconfig: {path} (context {self.spec.name}, mode 0600)")
        self._check_hostname(text, reporter)
        if self.merge_kubeconfig:
            home = self.home_kubeconfig
            existing = home.read_text() if home.is_file() else None
            write_private(home, merge(existing, ours, self.spec.name))
            reporter.note(f"kubeconfig: context {self.spec.name} merged into {home}")
        self.state.resources[KUBECONFIG] = ResourceEntry(
            KUBE_KIND, str(path), "created", self._kube_props()
        )
        self.store.save(self.state)

    def _check_hostname(self, text: str, reporter: Reporter) -> None:
        """The apiserver through the load balancer under the hostname: a certificate without
        it (hostname not in tls-san) is an error, an LB that does not answer only a note."""
        lb = self.spec.load_balancer.address
        if lb is None:
            return
        client = gate.Client(credentials(text, "rke2.yaml"))
        said = gate.via_hostname(client, lb, self.spec.hostname)
        if said is None:
            reporter.note(f"kubeconfig: https://{self.spec.hostname}:6443 answers through {lb}")
        elif said.startswith("certificate"):
            raise InvalidError(
                f"https://{self.spec.hostname}:6443 through the load balancer {lb}: {said}; the "
                f"servers' certificate does not carry {self.spec.hostname} (tls-san); fix: add "
                "it to tls-san of every server (rke2ha renders it; a server installed by hand "
                "needs it in /etc/rancher/rke2/config.yaml) and restart rke2-server there"
            )
        else:
            reporter.note(
                f"kubeconfig: {self.spec.hostname}:6443 through {lb} not checked ({said})"
            )

    # ---- state ------------------------------------------------------------------------------

    def _attrs(self, name: str) -> dict[str, Any]:
        entry = self.state.resources.get(address(name))
        return dict(entry.attrs) if entry is not None else {}

    def _save(self, name: str, status: Status, *, step: str, installed: bool) -> None:
        target = self.targets[name]
        self.state.resources[address(name)] = ResourceEntry(
            KIND,
            f"{name} {target.endpoint.host}",
            status,
            {
                "host": target.endpoint.host,
                "version": self.version,
                "first": name == self.names[0],
                "installed": installed,
                "step": step,
            },
        )
        self.store.save(self.state)

    # ---- down --uninstall-rke2 ---------------------------------------------------------------

    def destroy_observed(self) -> dict[str, Observed]:
        """With --uninstall-rke2: the nodes where rke2ha ran install.sh, and the kubeconfig."""
        if not self.uninstall:
            return {}
        found: dict[str, Observed] = {}
        before: tuple[str, ...] = ()
        for key, entry in self.state.resources.items():
            if entry.kind == KIND and entry.attrs.get("installed"):
                # Each after the one before it, so joiners go first and the first server last.
                props = {"host": entry.attrs.get("host")}
                found[key] = Observed(key, KIND, str(entry.id), props, depends_on=before)
                before = (key,)
            elif entry.kind == KUBE_KIND:
                found[key] = Observed(key, KUBE_KIND, str(entry.id), dict(entry.attrs))
        return found

    def what_uninstall_deletes(self) -> str:
        return (
            "rke2-uninstall.sh stops RKE2 and deletes /etc/rancher/rke2, /var/lib/rancher/rke2 "
            "(etcd data: the cluster and everything in it), /var/lib/kubelet and RKE2's "
            "binaries and units"
        )

    def merged_context_note(self) -> str | None:
        """The context `up --merge-kubeconfig` put into the user's kubeconfig outlives the
        cluster; rke2ha does not edit that file, so it says how to remove it."""
        home = self.home_kubeconfig
        try:
            text = home.read_text() if home.is_file() else ""
        except OSError:
            return None
        name = self.spec.name
        if not has_context(text, name):
            return None
        return (
            f"{home} keeps the context {name} (merged by `up --merge-kubeconfig`; rke2ha does "
            f"not edit that file); remove it with `kubectl config delete-context {name}` "
            f"(and `kubectl config delete-cluster {name}`, `kubectl config delete-user {name}`)"
        )

    def _moved(self, address: str) -> str | None:
        """Why `address` must not be uninstalled: the spec now reaches the node at another
        address than the one rke2ha installed RKE2 on (the state file's). That address may be
        another machine, whose RKE2 rke2ha must not remove."""
        name = address[len(PREFIX) :]
        target = self.targets.get(name)
        entry = self.state.resources.get(address)
        saved = entry.attrs.get("host") if entry is not None else None
        if target is None or saved == target.endpoint.host:
            return None
        return (
            f"node {name}: rke2ha installed RKE2 on {saved} (state file), but the spec now "
            f"reaches {name} at {target.endpoint.host}; nothing was uninstalled; fix: put "
            f"{name}'s address back to {saved} and run `down --uninstall-rke2` again"
        )

    def check_before_destroy(self, plan: Plan) -> None:
        """Every node the plan uninstalls is where rke2ha installed it, checked before the
        first uninstall: one moved node stops the whole uninstall, not half of it."""
        refused = [
            line
            for change in plan.changes
            if change.kind == KIND and (line := self._moved(change.address)) is not None
        ]
        if refused:
            raise InvalidError("\n".join(refused))

    def destroy(self, change: Change, reporter: Reporter) -> None:
        if change.kind == KUBE_KIND:
            kubeconfig_path(self.spec).unlink(missing_ok=True)
            self.state.resources.pop(KUBECONFIG, None)
            self.store.save(self.state)
            return
        name = change.address[len(PREFIX) :]
        target = self.targets.get(name)
        if target is None:
            raise InvalidError(
                f"{change.address}: the spec no longer names this node; run `down` with the "
                "spec that installed it"
            )
        refused = self._moved(change.address)
        if refused:
            raise InvalidError(refused)

        async def go() -> None:
            async with connected(target) as conn:
                result = await conn.run(uninstall_command(), timeout=remote.INSTALL_TIMEOUT)
            if not result.ok:
                raise InvalidError(f"node {name}: rke2-uninstall.sh failed:\n{result.tail()}")

        _run(go())
        reporter.note(f"{name}: RKE2 uninstalled")
        self.state.resources.pop(change.address, None)
        self.store.save(self.state)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)
