"""How each load balancer engine is checked, started, reloaded and stopped. Pure: no I/O.

Everything an engine needs lives under `<state dir>/existing/<engine>/`:

    v-<fingerprint>/...      one rendered config per version (never edited once checked)
    current -> v-<...>       the version the engine runs; swapped atomically after a check
    <engine>.pid             the engine's master pid
    <engine>.log             its stderr/log

The engine is always started on `current/...`, so a reload re-reads the new version from
the same path: HAProxy's master re-executes itself with its original arguments on
SIGUSR2 (master-worker mode, `-W`), nginx re-reads `-c` on SIGHUP, the built-in load
balancer re-reads its `-f` spec on SIGHUP. Old workers keep their established connections
until they end, which is how a reload drops none.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("haproxy", "nginx", "builtin")
# Where the config sits inside a version folder (the render bundle's own paths).
CONFIG_PATHS = {
    "haproxy": "haproxy/haproxy.cfg",
    "nginx": "nginx/nginx.conf",
    "builtin": "builtin/lb-spec.yaml",
}
BINARIES = {"haproxy": "haproxy", "nginx": "nginx", "builtin": sys.executable}
INSTALL_HINTS = {
    "haproxy": "install HAProxy 2.4 or later (apt-get install haproxy)",
    "nginx": "install nginx with the stream module (apt-get install nginx-light "
    "libnginx-mod-stream)",
    "builtin": "",
}
# HAProxy master-worker: SIGUSR2 reloads; nginx and the built-in load balancer: SIGHUP.
RELOAD_SIGNALS = {"haproxy": signal.SIGUSR2, "nginx": signal.SIGHUP, "builtin": signal.SIGHUP}
# SIGTERM: HAProxy's master stops its workers, nginx shuts down fast, the built-in one drains.
STOP_SIGNAL = signal.SIGTERM
# Engines that fork into the background themselves (-D / nginx's default `daemon on`).
SELF_DAEMONIZING = frozenset({"haproxy", "nginx"})


@dataclass(frozen=True)
class EnginePaths:
    """The engine's files under the state folder."""

    root: Path
    engine: str

    @classmethod
    def under(cls, state_dir: Path, engine: str) -> EnginePaths:
        return cls(state_dir / "existing" / engine, engine)

    @property
    def current(self) -> Path:
        return self.root / "current"

    def version_dir(self, fingerprint: str) -> Path:
        return self.root / f"v-{fingerprint[:16]}"

    def config_in(self, base: Path) -> Path:
        return base / CONFIG_PATHS[self.engine]

    @property
    def running_config(self) -> Path:
        """The path the engine is started with (through the `current` link)."""
        return self.config_in(self.current)

    @property
    def pidfile(self) -> Path:
        return self.root / f"{self.engine}.pid"

    @property
    def log(self) -> Path:
        return self.root / f"{self.engine}.log"


def check_argv(engine: str, binary: str, config: Path, paths: EnginePaths) -> list[str]:
    """The engine's own config check; empty for the built-in engine (checked in-process)."""
    if engine == "haproxy":
        return [binary, "-c", "-f", str(config)]
    if engine == "nginx":
        return [binary, "-t", "-q", *_nginx_globals(config, paths)]
    return []


def start_argv(engine: str, binary: str, paths: EnginePaths) -> list[str]:
    """The command that starts the engine on `current`."""
    config = paths.running_config
    if engine == "haproxy":
        # -W master-worker (SIGUSR2 reloads), -D background, -p the master's pid.
        return [binary, "-W", "-D", "-p", str(paths.pidfile), "-f", str(config)]
    if engine == "nginx":
        return [binary, *_nginx_globals(config, paths)]
    return [
        binary,
        "-m",
        "rke2ha",
        "lb",
        "serve",
        "-f",
        str(config),
        "--access-log",
        str(paths.root / "access.log"),
    ]


def _nginx_globals(config: Path, paths: EnginePaths) -> list[str]:
    # The pid file and error log would otherwise be the system nginx's (/run, /var/log).
    return ["-c", str(config), "-e", str(paths.log), "-g", f"pid {paths.pidfile};"]


def is_our_process(engine: str, cmdline: str, paths: EnginePaths) -> bool:
    """True when `cmdline` (NULs read as spaces) is this engine on this folder's config.

    nginx rewrites its process title (`nginx: master process /usr/sbin/nginx -c ...`),
    so the match is on the text, not on argv positions.
    """
    if str(paths.running_config) not in cmdline:
        return False
    if engine == "builtin":
        return " lb serve " in f" {cmdline} "
    return engine in cmdline.split(" ", 1)[0] or cmdline.startswith(f"{engine}: master")
