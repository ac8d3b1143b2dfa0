"""Rule `provider.ignored`: the spec sets a field its provider does not act on.

A value that changes nothing is one the user believes is applied: `rke2.version` with
provider existing installs no RKE2 of that version, `rancher.replicas` in the lab starts no
Rancher. Which providers act on a field is data on the model (`used_by` in
`rke2ha.spec`, read through `rke2ha.specfields`), the same data the spec reference's
providers column shows. Only fields the spec file gave count, and only with a value other
than the default: a default changes nothing whoever wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel

from rke2ha.rules import sources
from rke2ha.rules.facts import Facts
from rke2ha.rules.finding import Issue, Rule, warning
from rke2ha.spec import Spec
from rke2ha.specfields import generic_path, spec_fields

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
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


def _holds_its_default(spec: Spec, path: str) -> bool:
    """Is the field at `path` (`nodes[1].address`) set to its default value?

    Specs written by programs (a `model_dump` copy) set every field; a default set again
    changes nothing either way, so only other values are worth a warning.
    """
    owner: object = spec
    *parents, name = _PATH_PART.findall(path)
    for key, index in parents:
        owner = getattr(owner, key) if key else owner[int(index)]  # type: ignore[index]
    if not isinstance(owner, BaseModel):
        return False
    field = type(owner).model_fields[name[0]]
    if field.is_required():
        return False
    default = field.get_default(call_default_factory=True)
    return bool(getattr(owner, name[0]) == default)


def _under(path: str, parents: list[str]) -> bool:
    return any(path.startswith(parent + ".") or path.startswith(parent + "[") for parent in parents)


def _ignored(spec: Spec, facts: Facts) -> Iterator[Issue]:
    fields = spec_fields()
    done: list[str] = []  # reported or refused paths; their children say nothing new
    for path in sorted(spec.explicit_paths):
        field = fields.get(generic_path(path))
        if field is None or spec.provider in field.providers or _under(path, done):
            continue
        if _holds_its_default(spec, path):
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
