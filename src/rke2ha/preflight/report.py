"""How `preflight` prints: one line per node (what it is), then one block per finding in
`validate`'s layout (rules.output), then the verdict; or stable JSON.

JSON: `{"ok": bool, "summary": {"error","warning","info"}, "findings": [{"id","severity",
"node","value","message","fix","path","source","line"}], "nodes": [{"node","address","user",
"reached","checks": [{"id","status","value"}],"facts"}], "pairs": [...], "seconds"}`
(README: Pre-flight).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from rke2ha.preflight.finding import NodeFinding
from rke2ha.preflight.runner import NodeReport, Preflight
from rke2ha.rules.finding import count_by_severity
from rke2ha.rules.output import finding_block


def to_json(result: Preflight) -> dict[str, Any]:
    document: dict[str, Any] = {
        "ok": result.ok,
        "summary": count_by_severity(result.findings),
        "findings": [f.as_dict() for f in result.findings],
        "nodes": [n.as_dict() for n in result.nodes],
        "seconds": round(result.seconds, 3),
    }
    document.update(result.extra)
    return document


def _node_line(node: NodeReport, findings: list[NodeFinding]) -> Text:
    line = Text(f"{node.node:<10}", style="bold")
    line.append(f" {node.user}@{node.address}  ")
    facts = node.facts
    if facts is None:
        line.append("not reached" if not node.reached else "no facts", style="bold red")
        return line
    memory = f"{facts.memory_bytes / 1024**3:.1f} GiB" if facts.memory_bytes else "? GiB"
    line.append(
        f"{facts.os or 'unknown OS'}, {facts.arch}, {facts.cpus} CPU, {memory}, "
        f"hostname {facts.hostname}"
    )
    counts = count_by_severity(f for f in findings if f.node == node.node)
    line.append(f"  ({counts['error']} error(s), {counts['warning']} warning(s))", style="dim")
    return line


def _groups(findings: list[NodeFinding]) -> list[list[NodeFinding]]:
    """Findings that say the same of several nodes (same id, severity, value and, but for
    the node's name, message and fix), together, in the order of their first one."""
    groups: dict[tuple[str, ...], list[NodeFinding]] = {}
    for f in findings:
        same = (f.id, f.severity, f.value, f.message.replace(f.node, "\0"),
                f.fix.replace(f.node, "\0"))  # fmt: skip
        groups.setdefault(same, []).append(f)
    return list(groups.values())


def _host_line(host: dict[str, Any], findings: list[NodeFinding]) -> Text:
    """One load balancer host: reached, and how many of its probes to the nodes connected."""
    line = Text(f"{host['host']:<10}", style="bold")
    line.append(f" load balancer host {host['address']}  ")
    if not host["reached"]:
        line.append("not reached", style="bold red")
        return line
    probes = host["probes"]
    opened = sum(1 for p in probes if p["result"] == "open")
    line.append(f"{opened}/{len(probes)} node ports reached")
    counts = count_by_severity(f for f in findings if f.node == host["host"])
    line.append(f"  ({counts['error']} error(s), {counts['warning']} warning(s))", style="dim")
    return line


def print_text(result: Preflight, console: Console, title: str) -> None:
    for node in result.nodes:
        console.print(_node_line(node, result.findings))
    hosts = result.extra.get("lb_hosts")
    for host in hosts if isinstance(hosts, list) else []:
        console.print(_host_line(host, result.findings))
    console.print()
    for group in _groups(result.findings):
        first = group[0]
        nodes = ", ".join(f.node for f in group)
        paths = ", ".join(f.path for f in group)
        console.print(finding_block(first, f"{nodes} ({paths}): {first.value}"))
        console.print()
    counts = count_by_severity(result.findings)
    verdict = Text(f"{title}: ")
    verdict.append("ready" if result.ok else "NOT ready", style="bold green" if result.ok
                   else "bold red")  # fmt: skip
    reached = sum(1 for n in result.nodes if n.reached)
    verdict.append(
        f" ({reached}/{len(result.nodes)} nodes reached, {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {result.seconds:.1f}s)"
    )
    console.print(verdict)
