"""docs/spec-reference.md is generated from the spec's models and never drifts from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel

from rke2ha.spec import PROVIDERS, Spec
from rke2ha.specdoc import REGENERATE, render_reference
from rke2ha.specfields import spec_blocks, spec_fields

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "spec-reference.md"


def test_committed_reference_matches_the_models():
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == render_reference(), (
        f"docs/spec-reference.md is out of date with src/rke2ha/spec.py; run: {REGENERATE}"
    )


def test_every_field_and_block_is_described():
    missing = [f.path for f in spec_fields().values() if not f.description]
    assert missing == [], f"add Field(description=...) in src/rke2ha/spec.py for: {missing}"
    undocumented = [b.title for b in spec_blocks() if not b.description]
    assert undocumented == [], f"add a docstring to the model of: {undocumented}"


def _model_paths(model: type[BaseModel], prefix: str) -> list[str]:
    """Every field path, walked from the pydantic models themselves (not from specfields)."""
    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        args = [info.annotation, *get_args(info.annotation)]
        for arg in [*args, *(a for x in args for a in get_args(x))]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                is_list = get_origin(info.annotation) is list
                paths += _model_paths(arg, f"{path}[]." if is_list else f"{path}.")
                break
    return paths


def test_every_field_of_every_model_is_in_the_reference():
    text = render_reference()
    paths = _model_paths(Spec, "")
    assert len(paths) > 80
    for path in paths:
        assert f"| `{path}` |" in text, path
    # The fields a new user could not find in the README before.
    for path in ("rke2.version", "rancher.version", "load_balancer.admin", "nodes[].address"):
        assert path in paths


def test_providers_come_from_the_models():
    fields = spec_fields()
    assert fields["rke2.version"].providers == ("lab", "existing")
    assert fields["aws.ami"].providers == ("aws",)  # inherited from the `aws` block
    assert fields["load_balancer.pair.primary"].providers == ("existing",)
    assert fields["hostname"].providers == PROVIDERS
    assert "| `rke2.version` | string |  | lab, existing |" in render_reference()
    for field in fields.values():
        assert set(field.providers) <= set(PROVIDERS)


def test_types_and_defaults_are_read_from_the_models():
    fields = spec_fields()
    assert fields["load_balancer.ports"].default == "`[80, 443, 6443, 9345]`"
    assert fields["load_balancer.idle_timeout"].default == "`1h`"
    assert fields["load_balancer.idle_timeout"].type.startswith("duration")
    assert fields["load_balancer.health.rise"].type == "integer 1 to 100"
    assert fields["provider"].type == "one of `lab`, `existing`, `aws`"
    assert fields["dns.zone"].required and fields["dns.zone"].default == "required"
    assert fields["rke2.version"].default == ""


def test_check_mode_fails_on_a_stale_file_and_names_the_command(tmp_path):
    stale = tmp_path / "spec-reference.md"
    stale.write_text(render_reference().replace("rke2.version", "rke2.versoin"))
    command = [sys.executable, "-m", "rke2ha.specdoc", "--check", "-o", str(stale)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert REGENERATE in result.stderr
    written = subprocess.run(
        [sys.executable, "-m", "rke2ha.specdoc", "-o", str(stale)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    assert stale.read_text() == render_reference()
