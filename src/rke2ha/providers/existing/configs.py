"""The engine's config for a spec: rendered, fingerprinted, written as a version folder.

haproxy and nginx get exactly what `rke2ha render` produces (`render.bundle`), with the
layout pointed at the version folder so the paths inside the config (certificates) are the
version's own, and the frontends bound to `load_balancer.address` (every address when a
keepalived pair shares it). The built-in load balancer gets a copy of the spec, and at
layer 7 copies of the certificate and key (`builtin.py`).

The fingerprint is taken from a rendering with placeholder folders, so it names the
content alone and the version folder can be named after it.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rke2ha.errors import InvalidError, UsageError
from rke2ha.lbhost.files import SideFile, side_files
from rke2ha.providers.existing.builtin import builtin_version, read_tls_pem
from rke2ha.providers.existing.engines import CONFIG_PATHS, EnginePaths
from rke2ha.render import Layout, Rendering, SecretInputs, render_files
from rke2ha.render.common import DEFAULT_LAYOUT
from rke2ha.render.write import write_rendering
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec
from rke2ha.specdiff import unified

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
    drained: tuple[str, ...] = ()  # nodes rendered `down` (nginx; the state's `drained`)

    @property
    def short(self) -> str:
        return self.fingerprint[:16]


SOCKET_PATH_MAX = 90


def local_socket(spec: Spec) -> str:
    """The runtime-API socket of the HAProxy rke2ha runs on this machine (`lb drain`).

    In the engine's state folder, unless that path is too long for a unix socket address
    (HAProxy 2.6 refuses a `stats socket` path over 97 bytes: "too long (max 97)"): then
    a name in /tmp derived from the folder.
    """
    root = EnginePaths.under(spec.state_dir, "haproxy").root.absolute()
    path = str(root / "haproxy.sock")
    if len(path.encode()) <= SOCKET_PATH_MAX:
        return path
    return f"/tmp/rke2ha-haproxy-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.sock"


def _layout(spec: Spec, base: Path, socket: str | None) -> Layout:
    lb = spec.load_balancer
    # The virtual IP is on one host at a time: the other's HAProxy must start without it.
    shared = lb.pair is not None or len(lb.hosts) > 1
    bind = "" if shared else (lb.address or "")
    return Layout(
        haproxy_dir=str(base / "haproxy"),
        nginx_dir=str(base / "nginx"),
        bind_host=bind,
        haproxy_socket=socket if socket is not None else local_socket(spec),
    )


def _secret_inputs(spec: Spec) -> SecretInputs:
    health = spec.health_token_file
    token = read_secret(health, what="health token") if health is not None else None
    chain = key = None
    if spec.load_balancer.layer == 7 and spec.load_balancer.tls is not None:
        chain, key = read_tls_pem(spec)
    return SecretInputs(_NO_TOKEN, token, chain, key)


def _rendered(
    spec: Spec,
    engine: str,
    base: Path,
    inputs: SecretInputs,
    socket: str | None = None,
    drained: Collection[str] = (),
) -> Rendering:
    rendering = render_files(spec, SPEC_LABEL, inputs, _layout(spec, base, socket), drained)
    prefix = f"{engine}/"
    files = {p: f for p, f in rendering.files.items() if p.startswith(prefix)}
    if CONFIG_PATHS[engine] not in files:
        why = rendering.skipped.get(CONFIG_PATHS[engine], "the renderer produced no config")
        raise InvalidError(f"load_balancer.engine {engine}: cannot render its config: {why}")
    return Rendering(files)


def _builtin(spec: Spec) -> EngineConfig:
    version = builtin_version(spec)
    return EngineConfig("builtin", version.fingerprint, version.files)


def engine_config(spec: Spec, drained: Collection[str] = ()) -> EngineConfig:
    """The config the spec asks the engine to run, without writing anything; `drained`:
    the state's drained nodes."""
    engine = spec.load_balancer.engine
    if engine == "aws-nlb":
        raise UsageError(
            "load_balancer.engine aws-nlb needs provider aws; with provider existing choose "
            "builtin, haproxy or nginx"
        )
    if engine == "builtin":
        return _builtin(spec)
    inputs = _secret_inputs(spec)
    canonical = _rendered(spec, engine, _PLACEHOLDER, inputs, drained=drained)
    digest = hashlib.sha256()
    for path, rendered in canonical.files.items():
        digest.update(f"{path}\0{rendered.text}\0".encode())
    # The files themselves are rendered again against the real folder in `write_version`.
    return EngineConfig(engine, digest.hexdigest(), canonical, tuple(sorted(drained)))


def write_version(spec: Spec, config: EngineConfig, paths: EnginePaths) -> Path:
    """Write the version folder (replacing a half-written one); its config file's path."""
    target = paths.version_dir(config.fingerprint)
    if target.exists():
        shutil.rmtree(target)
    if config.engine == "builtin":
        files = config.files
    else:
        files = _rendered(spec, config.engine, target, _secret_inputs(spec), drained=config.drained)
    write_rendering(files, target)
    return paths.config_in(target)


def config_diffs(
    running_config_file: Path, running_engine: str, config: EngineConfig
) -> dict[str, str]:
    """A unified diff per file between the running version and `config` (for `plan`).

    The running version's folder is read back from its config file's path. Paths inside
    haproxy/nginx configs name the version folder; both sides are compared with the
    placeholder folder in its place, so only real changes show. Secret files (a layer 7
    key) are named, never shown. Nothing readable: no diffs (the digests still say it).
    """
    relative = CONFIG_PATHS.get(running_engine)
    if relative is None:
        return {}
    old_dir = running_config_file
    for _ in Path(relative).parts:
        old_dir = old_dir.parent
    try:
        real_dir = old_dir.resolve(strict=True)
        old_files = {
            str(f.relative_to(real_dir)): f for f in sorted(real_dir.rglob("*")) if f.is_file()
        }
    except OSError:
        return {}
    diffs: dict[str, str] = {}
    for path in sorted({*old_files, *config.files.files}):
        new = config.files.files.get(path)
        old = old_files.get(path)
        try:
            before = old.read_text(encoding="utf-8") if old is not None else ""
            # Secret files are written 0600 (render/write.py): a running one stays unshown
            # even when this spec no longer has it.
            old_secret = old is not None and old.stat().st_mode & 0o077 == 0
        except (OSError, UnicodeDecodeError):
            continue
        before = before.replace(str(real_dir), str(_PLACEHOLDER))
        after = new.text if new is not None else ""
        if (new is not None and new.secret) or old_secret:
            if before != after:
                diffs[path] = "(holds a secret: changed, not shown)\n"
            continue
        text = unified(path, before, after)
        if text:
            diffs[path] = text
    return diffs


def host_config_text(spec: Spec, drained: Collection[str] = ()) -> str:
    """The engine's config for `load_balancer.hosts`: rendered for the Debian package's own
    folder (/etc/haproxy), frontends bound to `load_balancer.address` (the host's; every
    address when two hosts share it as a virtual IP); `drained`: the state's drained nodes."""
    return host_files(spec, drained)[0]


def host_files(spec: Spec, drained: Collection[str] = ()) -> tuple[str, tuple[SideFile, ...]]:
    """`host_config_text` and, from the same rendering, the files its config needs on the
    host (`lbhost.files.side_files`: a layer 7 certificate and key, the health token's
    environment file and drop-in)."""
    engine = spec.load_balancer.engine
    rendered = _rendered(
        spec, engine, Path("/etc"), _secret_inputs(spec), DEFAULT_LAYOUT.haproxy_socket, drained
    )
    config = CONFIG_PATHS[engine]
    texts = {path: file.text for path, file in rendered.files.items()}
    return rendered.files[config].text, side_files(engine, texts, config)
