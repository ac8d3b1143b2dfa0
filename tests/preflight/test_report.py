"""The text and JSON of a pre-flight, from results built here (no SSH)."""

from __future__ import annotations

import io

from rich.console import Console
from tests.preflight.test_facts import REAL

from rke2ha.preflight import checks, report
from rke2ha.preflight.facts import from_output
from rke2ha.preflight.finding import Problem
from rke2ha.preflight.runner import NodeReport, Preflight


def _result() -> Preflight:
    facts = from_output(REAL)
    nodes = []
    findings = []
    for index, name in enumerate(("node-1", "node-2", "node-3")):
        node = NodeReport(name, index, f"198.18.0.1{index + 1}", "rke2ha", reached=index < 2)
        if node.reached:
            node.facts = facts
            for outcome in checks.run_node_checks(facts):
                node.outcomes.append(outcome)
                if outcome.problem:
                    findings.append(checks.stamp(outcome.id, name, index, outcome.value,
                                                 outcome.problem, "src"))  # fmt: skip
        else:
            node.add("node.ssh", "timeout", Problem("error", "no login within 3s", "start it"),
                     "src")  # fmt: skip
            findings += node.findings
        nodes.append(node)
    return Preflight(nodes, findings, 1.25, {"pairs": [], "listeners": {}})


def test_text_groups_what_several_nodes_share_and_names_the_unreached() -> None:
    out = io.StringIO()
    console = Console(file=out, width=300, highlight=False, color_system=None)
    report.print_text(_result(), console, "rke2ha preflight: demo")
    text = out.getvalue()
    assert "node-3     rke2ha@198.18.0.13  not reached" in text
    assert "node-1     rke2ha@198.18.0.11  Debian GNU/Linux 12 (bookworm), x86_64, 2 CPU" in text
    assert text.count("warning node.cpu") == 1
    assert "warning node.cpu  node-1, node-2 (nodes[0], nodes[1]): 2 CPU" in text
    assert "error   node.ssh  node-3 (nodes[2]): timeout" in text
    assert text.rstrip().endswith(
        "rke2ha preflight: demo: NOT ready (2/3 nodes reached, 1 error(s), 4 warning(s), 1.2s)"
    )


def test_json_document() -> None:
    doc = report.to_json(_result())
    assert doc["ok"] is False
    assert doc["summary"] == {"error": 1, "warning": 4, "info": 0}
    assert [n["reached"] for n in doc["nodes"]] == [True, True, False]
    assert doc["nodes"][2]["facts"] is None
    assert doc["nodes"][2]["checks"] == [{"id": "node.ssh", "status": "error", "value": "timeout"}]
    assert doc["findings"][0]["node"] in ("node-1", "node-2", "node-3")
