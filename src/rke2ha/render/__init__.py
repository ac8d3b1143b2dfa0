"""Configs for the real engines operators run, rendered from the spec (`rke2ha render`).

One module per engine, each a pure function from the spec to text: `haproxy`, `nginx`,
`keepalived`, `rke2` (per-server config.yaml and the apiserver authentication config),
`rancher` (Helm values and install.sh), `dnszone` (zone file and nsupdate input). `bundle`
gathers them into {relative path: file} and reads the few secrets they need; `write` puts
them on disk. `render_to_dir` is the whole command as a library call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from rke2ha.errors import InvalidError
from rke2ha.invocation import spec_command
from rke2ha.render import outdir
from rke2ha.render.bundle import RenderedFile, Rendering, SecretInputs, read_inputs, render_files
from rke2ha.render.common import DEFAULT_LAYOUT, Layout
from rke2ha.render.write import write_rendering
from rke2ha.spec import Spec

__all__ = [
    "DEFAULT_LAYOUT",
    "Layout",
    "RenderResult",
    "RenderedFile",
    "Rendering",
    "SecretInputs",
    "refuse_invalid",
    "render_files",
    "render_to_dir",
]


@dataclass(frozen=True)
class RenderResult:
    written: list[Path]
    secret: list[Path]  # the subset written mode 0600
    skipped: dict[str, str]  # relative path -> why it was not rendered
    removed: list[Path] = field(default_factory=list)  # an earlier render's, not written now


def refuse_invalid(spec: Spec) -> None:
    """Raise InvalidError when `validate` finds errors: configs for a broken spec mislead."""
    from rke2ha.rules import evaluate  # the rules read files; import only when rendering

    errors = [finding for finding in evaluate(spec) if finding.severity == "error"]
    if errors:
        lines = "\n".join(f"  {f.id}: {f.path or '(spec)'}: {f.message}" for f in errors)
        raise InvalidError(
            f"the spec has {len(errors)} error{'s' * (len(errors) != 1)}; nothing rendered "
            f"(run `{spec_command(spec, 'validate')}` for the fixes, or render anyway with "
            f"--force):\n{lines}"
        )


def render_to_dir(
    spec: Spec,
    out_dir: Path,
    spec_label: str,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    force: bool = False,
    drained: Collection[str] = (),
) -> RenderResult:
    """Validate (unless `force`), read secrets, render every file (the `drained` nodes
    marked down where the engine has no runtime control: nginx), write them and remove
    the files an earlier render into `out_dir` wrote that this one does not (`outdir`);
    `force` also renders into a non-empty folder no render wrote."""
    if not force:
        refuse_invalid(spec)
    earlier = outdir.prepare(out_dir, force=force)
    rendering = render_files(spec, spec_label, read_inputs(spec), layout, drained)
    current = set(rendering.files)
    # Listed before writing: a render stopped half-way still leaves its files findable.
    outdir.write_manifest(out_dir, earlier | current)
    written = write_rendering(rendering, out_dir)
    removed = outdir.remove_stale(out_dir, earlier, current)
    outdir.write_manifest(out_dir, current)
    secret = [out_dir / path for path, file in rendering.files.items() if file.secret]
    return RenderResult(written, secret, rendering.skipped, removed)
