"""The engine's config for a spec: rendered, fingerprinted, written as a version folder.

haproxy and nginx get exactly what `rke2ha render` produces (`render.bundle`), with the
layout pointed at the version folder so the paths inside the config (certificates) are the
version's own, and the frontends bound to `load_balancer.address` (every address when a
keepalived pair shares it). The built-in load balancer gets a copy of the spec with every
file path made absolute, which `rke2ha lb serve -f` reads like any spec.

The fingerprint is taken from a rendering with placeholder folders, so it names the
content alone and the version folder can be named after it.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rke2ha.errors import InvalidError, UsageError
from rke2ha.lb.config import from_spec
from rke2ha.providers.existing.engines import CONFIG_PATHS, EnginePaths
from rke2ha.render import Layout, RenderedFile, Rendering, SecretInputs, render_files
from rke2ha.render.write import write_rendering
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

SPEC_LABEL = "the spec (rke2ha up, provider existing)"
_PLACEHOLDER = Path("/rke2ha-engine-version")
# The RKE2 token is not part of any load balancer file; the render bundle needs a value.
_NO_TOKEN = "not-rendered-here"


@dataclass(frozen=True)
class EngineConfig:
    """One version of the engine's config: its fingerprint and its files."""

    engine: str
    fingerprint: str
    files: Rendering

    @property
    def short(self) -> str:
        return self.fingerprint[:16]


def _layout(spec: Spec, base: Path) -> Layout:
    lb = spec.load_balancer
    bind = "" if lb.pair is not None else (lb.address or "")
    return Layout(haproxy_dir=str(base / "haproxy"), nginx_dir=str(base / "nginx"), bind_host=bind)


def _secret_inputs(spec: Spec) -> SecretInputs:
    health = spec.health_token_file
    token = read_secret(health, what="health token") if health is not None else None
    chain = key = None
    tls = spec.load_balancer.tls
    if spec.load_balancer.layer == 7 and tls is not None:
        cert_path = spec.resolve(tls.cert)
        try:
            chain = cert_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{cert_path}: cannot read load_balancer.tls.cert: {err}") from None
        key = read_secret(spec.resolve(tls.key), what="load_balancer.tls.key")
    return SecretInputs(_NO_TOKEN, token, chain, key)


def _rendered(spec: Spec, engine: str, base: Path, inputs: SecretInputs) -> Rendering:
    rendering = render_files(spec, SPEC_LABEL, inputs, _layout(spec, base))
    prefix = f"{engine}/"
    files = {p: f for p, f in rendering.files.items() if p.startswith(prefix)}
    if CONFIG_PATHS[engine] not in files:
        why = rendering.skipped.get(CONFIG_PATHS[engine], "the renderer produced no config")
        raise InvalidError(f"load_balancer.engine {engine}: cannot render its config: {why}")
    return Rendering(files)


def _absolute_paths(spec: Spec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", exclude_none=True)
    lb = data["load_balancer"]
    if spec.health_token_file is not None:
        lb["health"]["token_file"] = str(spec.health_token_file)
    if spec.load_balancer.tls is not None:
        lb["tls"] = {
            "cert": str(spec.resolve(spec.load_balancer.tls.cert)),
            "key": str(spec.resolve(spec.load_balancer.tls.key)),
        }
    data.setdefault("rke2", {})["token_file"] = str(spec.rke2_token_file)
    data.setdefault("rancher", {})["bootstrap_password_file"] = str(spec.bootstrap_password_file)
    rfc2136 = spec.dns.rfc2136
    if rfc2136 is not None:
        data["dns"]["rfc2136"]["key_file"] = str(spec.resolve(rfc2136.key_file))
    return data


def _builtin(spec: Spec) -> EngineConfig:
    if spec.load_balancer.layer != 4:
        raise UsageError(
            "load_balancer.engine builtin at layer 7 is not run by provider existing yet; "
            "use layer: 4, or engine haproxy or nginx for layer 7"
        )
    # What the built-in load balancer will run: its fingerprint ignores spec parts it
    # does not read (DNS, Rancher), so changing those does not reload it.
    try:
        lb_config = from_spec(spec)
    except (InvalidError, UsageError) as err:
        raise InvalidError(f"the built-in load balancer rejects the spec: {err}") from None
    fingerprint = hashlib.sha256(repr(lb_config).encode()).hexdigest()
    text = yaml.safe_dump(_absolute_paths(spec), sort_keys=True)
    files = Rendering({CONFIG_PATHS["builtin"]: RenderedFile(text)})
    return EngineConfig("builtin", fingerprint, files)


def engine_config(spec: Spec) -> EngineConfig:
    """The config the spec asks the engine to run, without writing anything."""
    engine = spec.load_balancer.engine
    if engine == "aws-nlb":
        raise UsageError(
            "load_balancer.engine aws-nlb needs provider aws; with provider existing choose "
            "builtin, haproxy or nginx"
        )
    if engine == "builtin":
        return _builtin(spec)
    inputs = _secret_inputs(spec)
    canonical = _rendered(spec, engine, _PLACEHOLDER, inputs)
    digest = hashlib.sha256()
    for path, rendered in canonical.files.items():
        digest.update(f"{path}\0{rendered.text}\0".encode())
    # The files themselves are rendered again against the real folder in `write_version`.
    return EngineConfig(engine, digest.hexdigest(), canonical)


def write_version(spec: Spec, config: EngineConfig, paths: EnginePaths) -> Path:
    """Write the version folder (replacing a half-written one); its config file's path."""
    target = paths.version_dir(config.fingerprint)
    if target.exists():
        shutil.rmtree(target)
    if config.engine == "builtin":
        files = config.files
    else:
        files = _rendered(spec, config.engine, target, _secret_inputs(spec))
    write_rendering(files, target)
    return paths.config_in(target)


def check_builtin(config_file: Path) -> None:
    """The built-in engine's check: load the written spec copy as `lb serve -f` will."""
    try:
        from_spec(load_spec(config_file))
    except (InvalidError, UsageError) as err:
        raise InvalidError(f"the built-in load balancer rejects {config_file}: {err}") from None
