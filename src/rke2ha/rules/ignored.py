"""Rule `provider.ignored`: the spec sets a field its provider does not act on.

A value that changes nothing is one the user believes is applied: `rke2.version` with
provider existing installs no RKE2 of that version, `rancher.replicas` in the lab starts no
Rancher. Which providers act on a field is data on the model (`used_by` in
`rke2ha.spec`, read through `rke2ha.specfields`), the same data the spec reference's
providers column shows. Only fields the spec file gave count: a default is never the user's
mistake.
"""

from __future__ import annotations

from collections.abc import Iterator

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, warning
from rke2ha.spec import Spec
from rke2ha.specfields import generic_path, spec_fields

# Fields rule `provider` already refuses with an error when the provider does not use them;
# one finding per mistake is enough.
_REFUSED_BY_PROVIDER_RULE = {
    ("aws", "lab"),
    ("aws", "existing"),
    ("lab", "aws"),
    ("lab", "existing"),
    ("nodes[].address", "aws"),
    ("load_balancer.address", "aws"),
    ("load_balancer.pair", "aws"),
}


def _under(path: str, parents: list[str]) -> bool:
    return any(path.startswith(parent + ".") or path.startswith(parent + "[") for parent in parents)


def _ignored(spec: Spec, facts: Facts) -> Iterator[Issue]:
    fields = spec_fields()
    done: list[str] = []  # reported or refused paths; their children say nothing new
    for path in sorted(spec.explicit_paths):
        field = fields.get(generic_path(path))
        if field is None or spec.provider in field.providers or _under(path, done):
            continue
        done.append(path)
        if (field.path, spec.provider) in _REFUSED_BY_PROVIDER_RULE:
            continue
        users = ", ".join(field.providers) or "no provider"
        fix = f"remove {path}"
        if field.instead:
            fix += f"; {field.instead}"
        yield warning(
            path,
            f"{path} is set, but provider {spec.provider} does not use it (used by: "
            f"{users}); the value changes nothing",
            fix,
        )


RULES = (
    Rule(
        "provider.ignored",
        "no field set that the provider ignores",
        sources.SPEC_REFERENCE,
        _ignored,
    ),
)
