"""What `validate` finds wrong with a spec the load balancer is about to serve, as log lines.

Serving does not refuse such a spec: a node taken out for maintenance is a real reason to
serve two for a while. It does say so, on every start and every SIGHUP, so an operator who
edited the spec by hand learns what `rke2ha validate` would have told them.
"""

from __future__ import annotations

import logging

from rke2ha.spec import Spec

log = logging.getLogger("rke2ha.lb")


def warn_spec_errors(spec: Spec) -> None:
    """Log each error finding of `spec` (with its fix) as a warning."""
    from rke2ha.rules import evaluate

    errors = [f for f in evaluate(spec) if f.severity == "error"]
    for finding in errors:
        where = f" ({finding.path})" if finding.path else ""
        log.warning(
            "the spec does not validate: %s%s: %s; fix: %s",
            finding.id,
            where,
            finding.message,
            finding.fix,
        )
