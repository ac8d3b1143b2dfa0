"""The rules a spec must satisfy (README: rke2ha validate): each with an id, a fix, a source.

`evaluate(spec)` reads the facts the rules need (file modes, the layer-7 certificate)
and runs every rule; `evaluate_with(spec, facts)` runs them on given facts, which is how
the rules are unit-tested. Findings come back sorted: errors first, then by id and path.
"""

from __future__ import annotations

from datetime import datetime

from rke2ha.rules import (
    dns,
    files,
    hostname,
    ignored,
    install,
    lb,
    nodes,
    provider,
    rancher,
    rke2,
    tls,
)
from rke2ha.rules.facts import Facts, gather_facts
from rke2ha.rules.finding import Finding, Rule, Severity, count_by_severity, sort_key
from rke2ha.spec import Spec

RULES: tuple[Rule, ...] = (
    *nodes.RULES,
    *hostname.RULES,
    *dns.RULES,
    *lb.RULES,
    *rke2.RULES,
    *install.RULES,
    *files.RULES,
    *tls.RULES,
    *provider.RULES,
    *ignored.RULES,
    *rancher.RULES,
)
RULE_IDS: tuple[str, ...] = tuple(rule.id for rule in RULES)

__all__ = [
    "RULES",
    "RULE_IDS",
    "Facts",
    "Finding",
    "Rule",
    "Severity",
    "count_by_severity",
    "evaluate",
    "evaluate_with",
    "gather_facts",
]


def evaluate_with(spec: Spec, facts: Facts) -> list[Finding]:
    """Every rule's findings for `spec` given `facts`, sorted (errors first)."""
    findings = [finding for rule in RULES for finding in rule.run(spec, facts)]
    return sorted(findings, key=sort_key)


def evaluate(spec: Spec, now: datetime | None = None) -> list[Finding]:
    """Read the facts the rules need from disk and run every rule."""
    return evaluate_with(spec, gather_facts(spec, now))
