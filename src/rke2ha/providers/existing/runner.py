"""Run one engine version: check it with the real binary, then start it or reload it.

The order is the point: the new version is written to its own folder and checked by the
engine's binary *before* the `current` link moves or any signal is sent, so a config the
binary rejects never replaces the one running. A reload is confirmed, not assumed: HAProxy
and nginx must show a new worker, the built-in load balancer must log its reload.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rke2ha.errors import InvalidError, UsageError
from rke2ha.providers.existing import processes
from rke2ha.providers.existing.builtin import check_builtin
from rke2ha.providers.existing.configs import EngineConfig, write_version
from rke2ha.providers.existing.engines import (
    BINARIES,
    INSTALL_HINTS,
    RELOAD_SIGNALS,
    SELF_DAEMONIZING,
    EnginePaths,
    check_argv,
    is_our_process,
    start_argv,
)
from rke2ha.providers.existing.fdlimit import ensure_haproxy_fits
from rke2ha.render.haproxy import TOKEN_ENV
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec

RELOAD_TIMEOUT = 10.0
START_TIMEOUT = 15.0


def find_binary(engine: str) -> str:
    """The engine's executable; UsageError saying how to install it when missing."""
    name = BINARIES[engine]
    if os.path.isabs(name):
        return name
    # Engines live in sbin, which a non-login PATH may lack.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise UsageError(
            f"load_balancer.engine is {engine} but no `{name}` binary was found; "
            f"{INSTALL_HINTS[engine]}"
        )
    return found


@dataclass
class EngineRunner:
    spec: Spec
    engine: str

    @property
    def paths(self) -> EnginePaths:
        return EnginePaths.under(self.spec.state_dir, self.engine)

    @property
    def what(self) -> str:
        return "the built-in load balancer" if self.engine == "builtin" else self.engine

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        token = self.spec.health_token_file
        if self.engine == "haproxy" and token is not None:
            # The rendered haproxy.cfg reads the 6443 check's token from its environment.
            env[TOKEN_ENV] = read_secret(token, what="health token")
        return env

    def running_pid(self, recorded: int | None = None) -> int | None:
        """The engine's pid when a process of ours runs it (pid file, else the state's)."""
        for pid in (processes.read_pid(self.paths.pidfile), recorded):
            if pid is None:
                continue
            text = processes.cmdline(pid)
            if text is not None and is_our_process(self.engine, text, self.paths):
                return pid
        return None

    # ---- check ----------------------------------------------------------------------------

    def prepare(self, config: EngineConfig) -> Path:
        """Write and check a version; nothing running is touched. Its folder."""
        config_file = write_version(self.spec, config, self.paths)
        version = self.paths.version_dir(config.fingerprint)
        try:
            if self.engine == "builtin":
                check_builtin(config_file)
            else:
                argv = check_argv(self.engine, find_binary(self.engine), config_file, self.paths)
                processes.run_check(argv, self.env(), self.what)
                if self.engine == "haproxy":
                    # `haproxy -c` passes a config that then fails at start for want of
                    # open files; say so now, with the fix.
                    ensure_haproxy_fits(config_file.read_text())
        except BaseException:
            # A rejected version is never run: leave no trace of it.
            shutil.rmtree(version, ignore_errors=True)
            if not any(self.paths.root.iterdir()):
                self.remove_files()
            raise
        return version

    def make_current(self, version: Path) -> None:
        link = self.paths.current
        tmp = link.with_name(".current.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(version.name, tmp)
        os.replace(tmp, link)

    def prune(self) -> None:
        """Remove every version folder but the current one."""
        keep = os.readlink(self.paths.current) if self.paths.current.is_symlink() else None
        for child in self.paths.root.glob("v-*"):
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)

    # ---- start, reload, stop --------------------------------------------------------------

    def start(self) -> int:
        argv = start_argv(self.engine, find_binary(self.engine), self.paths)
        if self.engine in SELF_DAEMONIZING:
            pid = processes.start_daemon(argv, self.env(), self.paths.pidfile, self.what)
        else:
            pid = processes.spawn_detached(argv, self.env(), self.paths.log, self.paths.pidfile)
        lb = self.spec.load_balancer
        if lb.pair is None and lb.address and lb.ports:
            # The layer 7 front binds 443 once its certificate is loaded: then it serves.
            port = 443 if self.engine == "builtin" and lb.layer == 7 else lb.ports[0]
            try:
                processes.wait_listening(
                    pid, lb.address, port, START_TIMEOUT, self.paths.log, self.what
                )
            except InvalidError:
                self.stop(pid, timeout=5.0)
                raise
        return pid

    def reload(self, pid: int) -> None:
        signum = RELOAD_SIGNALS[self.engine]
        if self.engine == "builtin":
            offset = processes.log_size(self.paths.log)
            os.kill(pid, signum)
            line = processes.wait_log_line(
                self.paths.log, offset, ("reload:", "reload failed"), RELOAD_TIMEOUT
            )
            if line is None or "reload failed" in line:
                raise InvalidError(
                    f"{self.what} (pid {pid}) did not confirm the reload: "
                    f"{line or 'no reload line in ' + str(self.paths.log)}"
                )
            return
        before = processes.children(pid)
        os.kill(pid, signum)
        if not processes.wait_new_children(pid, before, RELOAD_TIMEOUT):
            raise InvalidError(
                f"{self.what} (pid {pid}) started no new worker within {RELOAD_TIMEOUT:g}s "
                f"of the reload signal; the previous workers still serve. See {self.paths.log}"
            )
        # nginx's new workers exist before the old ones are told to stop accepting: done
        # only once they did, so a node the new config drained gets no new connection after.
        if self.engine == "nginx" and not processes.wait_stopped_accepting(before, RELOAD_TIMEOUT):
            raise InvalidError(
                f"{self.what} (pid {pid}): its previous workers still accept connections "
                f"{RELOAD_TIMEOUT:g}s after the reload. See {self.paths.log}"
            )

    def stop(self, pid: int, timeout: float | None = None) -> None:
        """Stop our engine and wait for its workers too (no process left behind)."""
        if timeout is None:
            builtin = self.engine == "builtin"
            timeout = self.spec.load_balancer.drain_timeout + 5.0 if builtin else 10.0
        workers = processes.children(pid)
        processes.stop(pid, timeout)
        for worker in workers:
            # Workers were our master's children when read; they normally exit with it.
            if processes.alive(worker):
                processes.stop(worker, 5.0)

    def remove_files(self) -> None:
        shutil.rmtree(self.paths.root, ignore_errors=True)
        parent = self.paths.root.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
