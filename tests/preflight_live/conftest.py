"""Helpers of the live pre-flight tests: run `rke2ha preflight` on the workstation of the
test machines and read its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.machines import Machine, Testbed


@dataclass
class Run:
    code: int
    doc: dict[str, Any]
    stdout: str
    stderr: str

    def findings(
        self, check: str | None = None, severity: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            f
            for f in self.doc.get("findings", [])
            if check in (None, f["id"]) and severity in (None, f["severity"])
        ]

    def errors(self) -> list[tuple[str, str]]:
        """(id, node) of every error."""
        return [(f["id"], f["node"]) for f in self.findings(severity="error")]

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.doc["nodes"] if n["node"] == name)


def preflight(bed: Testbed, spec: Path, *args: str, timeout: float = 120.0) -> Run:
    done = bed.workstation.rke2ha("preflight", "-f", str(spec), "--json", *args,
                                  timeout=timeout)  # fmt: skip
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"not JSON (exit {done.returncode}): {done.stdout}{done.stderr}"
        ) from None
    return Run(done.returncode, doc, done.stdout, done.stderr)


def write_spec(bed: Testbed, path: Path, machines: list[Machine] | None = None,
               ssh: dict[str, Any] | None = None, **kw: Any) -> Path:  # fmt: skip
    """The testbed's spec with short timeouts (and `ssh` merged into its ssh: block). The
    login timeout leaves room for an SSH handshake on a loaded 2-core machine (3 s timed out
    once in a full run beside other suites)."""
    import yaml

    doc = bed.spec(machines, **kw)
    doc["ssh"].update({"connect_timeout": "8s", "command_timeout": "10s", **(ssh or {})})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
