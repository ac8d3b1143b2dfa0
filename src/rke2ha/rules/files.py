"""Rule `files`: the local files the spec names are there and usable, before anything runs.

The checks read the disk (`rules.localfiles`, gathered into `Facts`); this rule reports
what they found, one error per field.
"""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, error, warning
from rke2ha.spec import Spec

AIRGAP = "RKE2 docs: Air-Gap Install, Tarball Method (https://docs.rke2.io/install/airgap)"
KEEPALIVED_AUTH = (
    "keepalived.conf(5), vrrp_instance authentication: auth_pass, only the first eight "
    "characters are used"
)


def _files(spec: Spec, facts: Facts) -> Iterator[Issue]:
    for problem in facts.local_files:
        report = warning if problem.severity == "warning" else error
        yield report(problem.path, problem.message, problem.fix)


RULES = (
    Rule(
        "files",
        "files the spec names exist, are private (0600) and hold what they should",
        f"{sources.SECRETS}; {KEEPALIVED_AUTH}; {AIRGAP}",
        _files,
    ),
)
