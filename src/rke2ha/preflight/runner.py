"""The pre-flight's I/O: log in to every node at once (rke2ha.ssh), run the gather script
and read the clock on each, then judge (checks) and probe between the nodes (pairs).

A node that cannot be reached is one `node.ssh` finding and the others are still checked;
every step has a timeout, so the whole run is bounded by a few times ssh.connect_timeout
plus ssh.command_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rke2ha.preflight import checks, gather, lbhosts, pairs, resolve, sources
from rke2ha.preflight.checks import ClockReading
from rke2ha.preflight.facts import NodeFacts, from_output
from rke2ha.preflight.finding import NodeFinding, Outcome, Problem
from rke2ha.rules.finding import sort_key
from rke2ha.ssh.connection import Background, Connection, Result, SshError, connect
from rke2ha.ssh.sudo import as_root
from rke2ha.ssh.target import Target, host_targets, targets

if TYPE_CHECKING:
    from rke2ha.spec import Spec


@dataclass
class NodeReport:
    """What pre-flight learned about one node."""

    node: str
    index: int
    address: str  # where rke2ha logged in (ssh host)
    user: str
    reached: bool = False
    facts: NodeFacts | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    findings: list[NodeFinding] = field(default_factory=list)
    clock: ClockReading | None = None
    connection: Connection | None = None

    def add(self, check_id: str, value: str, problem: Problem, source: str) -> None:
        self.findings.append(checks.stamp(check_id, self.node, self.index, value, problem,
                                          source))  # fmt: skip
        self.outcomes.append(Outcome(check_id, value, problem))

    def as_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "address": self.address,
            "user": self.user,
            "reached": self.reached,
            "checks": [o.as_dict() for o in self.outcomes],
            "facts": self.facts.as_dict() if self.facts else None,
        }


@dataclass
class Preflight:
    nodes: list[NodeReport]
    findings: list[NodeFinding]
    seconds: float
    extra: dict[str, object] = field(default_factory=dict)  # results of the pair probes

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


async def _sudo(report: NodeReport, conn: Connection) -> bool:
    """`sudo -n true` for a user other than root: False (and a node.sudo finding) when
    sudo would ask for a password or is missing."""
    if conn.target.privileged:
        report.outcomes.append(Outcome("node.sudo", "root"))
        return True
    done = await conn.run("sudo -n true", root=False)
    if done.ok:
        report.outcomes.append(Outcome("node.sudo", f"{report.user}: sudo -n"))
        return True
    said = (done.stderr.strip().splitlines() or ["timed out" if done.timed_out else "failed"])[-1]
    report.add(
        "node.sudo",
        f"{report.user}: {said}",
        Problem(
            "error",
            f"user {report.user} cannot run commands as root without a password ({said}); "
            "rke2ha never answers a password prompt",
            f"give {report.user} passwordless sudo ('{report.user} ALL=(ALL) NOPASSWD: ALL' in "
            "/etc/sudoers.d/rke2ha) or log in as root (ssh.user)",
        ),
        sources.SUDO,
    )
    return False


async def _visit(report: NodeReport, target: Target, accept_new: bool) -> None:
    try:
        conn = await connect(target, accept_new_host_keys=accept_new)
    except SshError as err:
        report.add("node.ssh", err.kind, Problem("error", err.message, err.fix), sources.SSH)
        return
    report.connection = conn
    report.reached = True
    report.outcomes.append(Outcome("node.ssh", f"{report.user}@{report.address}"))
    try:
        as_root = await _sudo(report, conn)
        # Without root most facts are still readable; ss cannot name other users' processes.
        done = await conn.run("sh -s", root=as_root, input=gather.script())
        if done.timed_out or done.exit_status is None:
            report.add(
                "node.ssh",
                "timed out",
                Problem(
                    "error",
                    f"reading the facts took longer than {target.command_timeout:g}s",
                    "check the machine's load (ssh.command_timeout sets the limit)",
                ),
                sources.SSH,
            )
            return
        report.facts = from_output(done.stdout)
        for outcome in checks.run_node_checks(report.facts):
            report.outcomes.append(outcome)
            if outcome.problem is not None:
                report.findings.append(
                    checks.stamp(outcome.id, report.node, report.index, outcome.value,
                                 outcome.problem, checks.NODE_SOURCES[outcome.id])
                )  # fmt: skip
        sent = time.time()
        clock = await conn.run("date +%s.%N", root=False)
        received = time.time()
        # A date without %N (busybox) prints no float: no skew measure for this node.
        if clock.ok:
            with contextlib.suppress(ValueError):
                report.clock = ClockReading(
                    report.node, report.index, float(clock.stdout.strip()), sent, received
                )
    except SshError as err:
        report.add("node.ssh", err.kind, Problem("error", err.message, err.fix), sources.SSH)


def select(spec: Spec, only: str | None) -> list[tuple[int, Target]]:
    """The nodes to visit: all of them, or the one `--node` names."""
    chosen = list(enumerate(targets(spec)))
    if only is None:
        return chosen
    picked = [(i, t) for i, t in chosen if t.node == only]
    if not picked:
        from rke2ha.errors import UsageError

        names = ", ".join(t.node for _, t in chosen)
        raise UsageError(f"--node {only}: no such node in the spec (nodes: {names})")
    return picked


async def run(spec: Spec, only: str | None = None, accept_new_host_keys: bool = False) -> Preflight:
    started = time.monotonic()
    chosen = select(spec, only)
    reports = [NodeReport(t.node, i, t.endpoint.host, t.endpoint.user) for i, t in chosen]
    try:
        await asyncio.gather(
            *(_visit(r, t, accept_new_host_keys) for r, (_, t) in zip(reports, chosen, strict=True))
        )
        findings = [f for r in reports for f in r.findings]
        reached = [r for r in reports if r.facts is not None]
        if only is None:
            findings += checks.hostname_findings([(r.node, r.index, r.facts.hostname)
                                                  for r in reached if r.facts])  # fmt: skip
            findings += checks.skew_findings([r.clock for r in reports if r.clock])
        # Always present, so the JSON keeps one shape (empty with --node or one node reached).
        result = Preflight(reports, findings, 0.0, {"pairs": [], "listeners": {}})
        await _between(spec, result, pair_probes=only is None)
        if only is None and spec.load_balancer.hosts:
            await _lb_hosts(spec, result)
    finally:
        await asyncio.gather(
            *(r.connection.close() for r in reports if r.connection), return_exceptions=True
        )
    result.findings.sort(key=lambda f: (*sort_key(f), f.node))
    result.seconds = time.monotonic() - started
    return result


async def _between(spec: Spec, result: Preflight, pair_probes: bool) -> None:
    """Name resolution on every reached node, then the probes between them (`pairs`)."""
    reached = [r for r in result.nodes if r.facts is not None and r.connection is not None]
    for found in await asyncio.gather(*(_resolve(spec, r) for r in reached)):
        result.findings += found
    if not pair_probes or len(reached) < 2:
        return
    probes, listeners = await probe_pairs(spec, reached)
    result.findings += pairs.judge(probes, {r.node: _peer(spec, r) for r in reached})
    result.extra["pairs"] = [p.as_dict() for p in probes]
    result.extra["listeners"] = listeners


def _peer(spec: Spec, report: NodeReport) -> pairs.Peer:
    return pairs.Peer(report.node, report.index, spec.nodes[report.index].address or report.address)


async def _resolve(spec: Spec, report: NodeReport) -> list[NodeFinding]:
    assert report.connection is not None
    lb = spec.load_balancer.addresses
    names = resolve.names_to_resolve(spec.hostname, lb)
    done = await report.connection.run(resolve.command(names), root=False)
    manual = spec.dns.provider == "manual"
    answers = resolve.parse(done.stdout)
    value, found = resolve.judge(report.node, report.index, spec.hostname, lb, answers, manual)
    report.findings += found
    worst = next((f for f in found if f.severity == "error"), found[0] if found else None)
    problem = Problem(worst.severity, worst.message, worst.fix) if worst else None
    report.outcomes.append(Outcome("node.resolve", value, problem))
    return found


async def probe_pairs(
    spec: Spec, reached: list[NodeReport]
) -> tuple[list[pairs.ProbeResult], dict[str, dict[str, object]]]:
    """Start a listener where a probe port is free, probe from every node to every other,
    stop every listener (and say whether each one ended)."""
    runners = {r.node: r for r in reached if r.facts and r.facts.python}
    started: dict[str, Background] = {}
    listeners: dict[str, dict[str, object]] = {}
    try:
        await asyncio.gather(*(_listen(r, started, listeners) for r in runners.values()))
        peers = {r.node: _peer(spec, r) for r in reached}
        by_address = {p.address: p.node for p in peers.values()}
        outputs = await asyncio.gather(
            *(_probe(r, [p for p in peers.values() if p.node != r.node]) for r in runners.values())
        )
    finally:
        ended = await asyncio.gather(*(b.stop() for b in started.values()))
        for node, ok in zip(started, ended, strict=True):
            listeners[node]["stopped"] = ok
    results: list[pairs.ProbeResult] = []
    for r, output in zip(runners.values(), outputs, strict=True):
        results += pairs.parse_probe(r.node, output, by_address)
    for r in reached:
        if r.node not in runners:  # no Python there: nothing probed from it
            results += [pairs.ProbeResult(r.node, p.node, proto, port, "not probed: no python3")
                        for p in peers.values() if p.node != r.node
                        for proto, port in pairs.PORTS]  # fmt: skip
        assert r.facts is not None
        for port in pairs.udp_taken(r.facts):  # an echo needs our listener
            results = [x if not (x.target == r.node and x.proto == "udp" and x.port == port)
                       else pairs.ProbeResult(x.source, x.target, x.proto, x.port,
                                              "not probed: port in use")
                       for x in results]  # fmt: skip
    return results, listeners


async def _listen(
    report: NodeReport, started: dict[str, Background], listeners: dict[str, dict[str, object]]
) -> None:
    assert report.facts is not None and report.connection is not None
    ports = pairs.to_open(report.facts)
    listeners[report.node] = {"ports": [], "stopped": True}
    if not ports:
        return
    background = await report.connection.start(pairs.listener_argv(report.facts.python, ports))
    started[report.node] = background
    listeners[report.node]["ports"] = pairs.parse_ready(await background.first_line(10.0))


async def _probe(report: NodeReport, peers: list[pairs.Peer]) -> str:
    assert report.facts is not None and report.connection is not None
    targets = [(p.address, proto, port) for p in peers for proto, port in pairs.PORTS]
    done = await report.connection.run(
        pairs.probe_argv(report.facts.python, targets), root=False,
        timeout=pairs.PROBE_TIMEOUT * 2 + 10,
    )  # fmt: skip
    return done.stdout


def run_sync(spec: Spec, only: str | None = None, accept_new_host_keys: bool = False) -> Preflight:
    return asyncio.run(run(spec, only, accept_new_host_keys))


# ---- the load balancer hosts (`lbhosts`) ---------------------------------------------------


async def _lb_hosts(spec: Spec, result: Preflight) -> None:
    """Log in to every load balancer host: its load balancer ports free (or rke2ha's engine's),
    and a connect from it to every node on every port it forwards to."""
    chosen = list(enumerate(host_targets(spec)))
    conns: dict[str, Connection] = {}
    facts: dict[str, lbhosts.HostFacts] = {}
    report: list[dict[str, object]] = []

    async def visit(index: int, target: Target) -> None:
        try:
            conn = await connect(target)
        except SshError as err:
            problem = Problem("error", f"load balancer host {target.node}: {err.message}", err.fix)
            result.findings.append(lbhosts.stamp("lbhost.ssh", target.node, index, err.kind,
                                                 problem))  # fmt: skip
            return
        conns[target.node] = conn
        try:
            done = await conn.run("sh -s", input=lbhosts.facts_script())
        except SshError as err:
            problem = Problem("error", f"load balancer host {target.node}: {err.message}", err.fix)
            result.findings.append(lbhosts.stamp("lbhost.ssh", target.node, index, err.kind,
                                                 problem))  # fmt: skip
            return
        if done.ok:
            facts[target.node] = lbhosts.parse_facts(done.stdout)
            return
        said = (done.stderr.strip().splitlines() or ["timed out"])[-1]
        problem = Problem(
            "error",
            f"load balancer host {target.node}: reading its listening ports failed ({said})",
            f"log in as root or give {target.endpoint.user} passwordless sudo on {target.node}",
        )
        result.findings.append(lbhosts.stamp("lbhost.ssh", target.node, index, said, problem))

    try:
        await asyncio.gather(*(visit(i, t) for i, t in chosen))
        for index, target in chosen:
            found = facts.get(target.node)
            if found is not None:
                finding = lbhosts.ports_finding(spec, target.node, index, found)
                if finding is not None:
                    result.findings.append(finding)
        probes = await _probe_from_hosts(spec, result, chosen, conns, facts)
        for index, target in chosen:
            mine = [p for p in probes if p.source == target.node]
            addresses = {r.node: _peer(spec, r).address for r in result.nodes}
            result.findings += lbhosts.judge(target.node, index, mine, addresses)
            report.append({"host": target.node, "address": target.endpoint.host,
                           "reached": target.node in facts,
                           "probes": [p.as_dict() for p in mine]})  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in conns.values()), return_exceptions=True)
    result.extra["lb_hosts"] = report


async def _probe_from_hosts(
    spec: Spec,
    result: Preflight,
    chosen: list[tuple[int, Target]],
    conns: dict[str, Connection],
    facts: dict[str, lbhosts.HostFacts],
) -> list[pairs.ProbeResult]:
    """A listener (as root: 80 and 443 are below 1024) on each reached node's free ports,
    the probes from each host, then every listener stopped."""
    ports = lbhosts.node_ports(spec)
    reached = [r for r in result.nodes if r.facts is not None and r.connection is not None]
    by_address = {_peer(spec, r).address: r.node for r in reached}
    covered: dict[str, set[int]] = {}  # node -> ports something answers on during the probes
    started: list[Background] = []
    outputs: Sequence[Result] = ()
    probers = [(i, t) for i, t in chosen if t.node in facts and facts[t.node].python]
    try:
        for r in reached:
            assert r.facts is not None and r.connection is not None
            held = {lst.port for lst in r.facts.listeners if lst.proto == "tcp"}
            covered[r.node] = held & set(ports)
            free = [f"tcp:{port}" for port in ports if port not in held]
            if not free or not r.facts.python:
                continue
            command = pairs.listener_argv(r.facts.python, free)
            background = await r.connection.start(as_root(command, r.connection.target.privileged))
            started.append(background)
            ready = pairs.parse_ready(await background.first_line(10.0))
            covered[r.node] |= {int(spec_.split(":")[1]) for spec_ in ready}
        targets = [(_peer(spec, r).address, "tcp", port) for r in reached for port in ports]
        outputs = await asyncio.gather(
            *(conns[t.node].run(pairs.probe_argv(facts[t.node].python, targets), root=False,
                                timeout=pairs.PROBE_TIMEOUT * 2 + 10)
              for _, t in probers)
        )  # fmt: skip
    finally:
        await asyncio.gather(*(b.stop() for b in started))
    results: list[pairs.ProbeResult] = []
    for (_, target), done in zip(probers, outputs, strict=True):
        for probe in pairs.parse_probe(target.node, done.stdout, by_address):
            if probe.result == "refused" and probe.port not in covered.get(probe.target, set()):
                # Nothing could listen there for the probe (no sudo for the listener): the
                # refusal says nothing about the path. A drop (a firewall) still counts.
                probe = pairs.ProbeResult(
                    probe.source,
                    probe.target,
                    probe.proto,
                    probe.port,
                    f"not probed: no listener on {probe.target}",
                )
            results.append(probe)
    silent = [t.node for _, t in chosen if t.node in facts and not facts[t.node].python]
    results += [pairs.ProbeResult(host, r.node, "tcp", port, "not probed: no python3")
                for host in silent for r in reached for port in ports]  # fmt: skip
    return results
