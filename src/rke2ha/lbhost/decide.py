"""What to do on a load balancer host, given what is there. Pure: no I/O.

The facts come from one read-only script (`FACTS_SCRIPT`, parsed by `parse_facts`); the
answer is a list of `Step`s (shell commands run as root, in order) and a `Record` of what
rke2ha changed, kept in the state file so `down` undoes exactly that and nothing else:
- the package: installed by rke2ha (down purges it) or already there (it stays);
- the config file: the original is copied aside once, before rke2ha's first replaces it,
  and put back by `down`;
- the unit: enabled by rke2ha (down disables it) or enabled already; running before
  rke2ha came (down reloads it with the original config) or not (down stops it).

The order is the point: the new config is uploaded to a temporary file next to the
running one and checked by the host's own binary before it is moved over the running
config, so a config the engine rejects never replaces the one running. The service is
then reloaded the way Debian's unit does it (`systemctl reload`: `haproxy -c`, then
SIGUSR2 to the master; Debian bookworm haproxy 2.6, /lib/systemd/system/haproxy.service),
or started when it was not running.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rke2ha.render.keepalived import TRACK_SCRIPT, TRACK_SCRIPT_PATH

StepKind = Literal[
    "install", "upload", "check", "save_original", "replace", "enable", "reload", "start",
    "restart", "stop", "restore", "remove_config", "disable", "purge", "verify", "helper",
    "remove_helper",
]  # fmt: skip


@dataclass(frozen=True)
class Engine:
    """Where a Debian package keeps one engine."""

    name: str
    package: str  # installed when the engine is missing (named in the error when it fails)
    binary: str
    config: str
    unit: str
    mode: str = "0644"  # of the config file; 0600 when it holds a secret
    # Other packages that provide the engine: any one installed counts as the engine there.
    alternatives: tuple[str, ...] = ()
    # Packages the rendered config needs besides the engine (nginx's stream module).
    modules: tuple[str, ...] = ()
    # A file of rke2ha's own the config refers to (keepalived's track script): path, text.
    helper: tuple[str, str] | None = None

    @property
    def staged(self) -> str:
        """The upload's temporary path: beside the config, so the move is one rename."""
        return f"{self.config}.rke2ha-new"

    @property
    def original(self) -> str:
        """Where the host's own config waits while rke2ha's runs."""
        return f"{self.config}.rke2ha-orig"

    def check_command(self, path: str) -> str:
        if self.name == "keepalived":
            # Only a keepalived whose --help lists --config-test (`-t`) can check a file; with
            # an older one the step says so on its output instead of failing.
            return (
                f"if {self.binary} --help 2>&1 | grep -q -- --config-test; "
                f"then {self.binary} -t -f {shlex.quote(path)}; "
                f"else echo '{self.binary} has no --config-test: config not checked'; fi"
            )
        if self.name == "nginx":
            # `-t` tests the file given with `-c` (nginx.org/en/docs/switches.html).
            return f"{self.binary} -t -c {shlex.quote(path)}"
        return f"{self.binary} -c -f {shlex.quote(path)}"


ENGINES = {
    "haproxy": Engine(
        "haproxy", "haproxy", "/usr/sbin/haproxy", "/etc/haproxy/haproxy.cfg", "haproxy.service"
    ),
    # Debian's unit reloads with SIGHUP (ExecReload=/bin/kill -HUP $MAINPID) and starts only
    # with a non-empty config (ConditionFileNotEmpty): /lib/systemd/system/keepalived.service.
    "keepalived": Engine(
        "keepalived",
        "keepalived",
        "/usr/sbin/keepalived",
        "/etc/keepalived/keepalived.conf",
        "keepalived.service",
        mode="0600",
        helper=(TRACK_SCRIPT_PATH, TRACK_SCRIPT),
    ),
    # Debian bookworm: `nginx` is the server itself (nginx-light/-core/-full/-extras are the
    # older flavours); layer 4 needs the stream module, a separate package
    # (libnginx-mod-stream) that nginx and nginx-light do not pull in. The unit reloads with
    # `nginx -s reload` (ExecReload in /lib/systemd/system/nginx.service): the master checks
    # the new config and keeps the old one running if it is wrong
    # (nginx.org/en/docs/control.html, "Changing Configuration").
    "nginx": Engine(
        "nginx",
        "nginx",
        "/usr/sbin/nginx",
        "/etc/nginx/nginx.conf",
        "nginx.service",
        alternatives=("nginx-light", "nginx-core", "nginx-full", "nginx-extras"),
        modules=("libnginx-mod-stream",),
    ),
}


# No debconf question may wait for an answer nobody can give over SSH.
APT = "DEBIAN_FRONTEND=noninteractive apt-get"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class HostFacts:
    package_installed: bool
    config_sha: str | None  # None: no config file
    original_sha: str | None  # rke2ha's saved copy of the host's own config; None: none
    enabled: str  # `systemctl is-enabled`: enabled, disabled, masked, not-found, ...
    active: str  # `systemctl is-active`: active, inactive, failed, activating, ...
    helper_sha: str | None = None  # the engine's helper file (`Engine.helper`); None: none
    missing_modules: tuple[str, ...] = ()  # of `Engine.modules`, those not installed

    @property
    def running(self) -> bool:
        return self.active in ("active", "reloading")

    @property
    def service(self) -> str:
        """For the plan: `enabled, active`."""
        return f"{self.enabled}, {self.active}"


def facts_script(engine: Engine) -> str:
    """Read-only: `key=value` lines for `parse_facts`."""
    pkg = shlex.quote(engine.package)
    unit = shlex.quote(engine.unit)

    def sha(path: str) -> str:
        quoted = shlex.quote(path)
        return f"[ -f {quoted} ] && sha256sum {quoted} | cut -d' ' -f1"

    # The first of the engine's packages that is installed, else the main one's status.
    names = " ".join(shlex.quote(p) for p in (engine.package, *engine.alternatives))
    status = "dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null"
    package = (
        f"echo package=$(for p in {names}; do s=$({status}); "
        f'case "$s" in *" installed") echo "$s"; exit;; esac; done; p={pkg}; {status})'
    )
    modules = " ".join(shlex.quote(m) for m in engine.modules)
    missing = (
        f"echo missing=$(for p in {modules}; do {status} | grep -q ' installed$' "
        '|| echo "$p"; done)'
    )
    return "; ".join(
        [
            package,
            *([missing] if engine.modules else []),
            f"echo config=$({sha(engine.config)})",
            f"echo original=$({sha(engine.original)})",
            f"echo enabled=$(systemctl is-enabled {unit} 2>/dev/null || true)",
            f"echo active=$(systemctl is-active {unit} 2>/dev/null || true)",
            *([f"echo helper=$({sha(engine.helper[0])})"] if engine.helper else []),
            "true",
        ]
    )


def parse_facts(text: str) -> HostFacts:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return HostFacts(
        package_installed=values.get("package", "").endswith(" installed"),
        config_sha=values.get("config") or None,
        original_sha=values.get("original") or None,
        enabled=values.get("enabled") or "not-found",
        active=values.get("active") or "unknown",
        helper_sha=values.get("helper") or None,
        missing_modules=tuple(values.get("missing", "").split()),
    )


@dataclass(frozen=True)
class Record:
    """What rke2ha changed on the host (the state file's attrs), and what it found there."""

    engine: str
    installed_package: bool  # True: rke2ha installed it, `down` purges it
    saved_original: bool  # True: the host's config waits at `Engine.original`
    enabled_unit: bool  # True: rke2ha enabled the unit, `down` disables it
    was_running: bool  # the service ran before rke2ha came
    config_sha: str  # the config rke2ha last put in place
    installed_modules: tuple[str, ...] = ()  # `Engine.modules` rke2ha installed; down purges

    def attrs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Record:
        return cls(
            engine=str(attrs["engine"]),
            installed_package=bool(attrs["installed_package"]),
            saved_original=bool(attrs["saved_original"]),
            enabled_unit=bool(attrs["enabled_unit"]),
            was_running=bool(attrs["was_running"]),
            config_sha=str(attrs["config_sha"]),
            installed_modules=tuple(attrs.get("installed_modules", ())),
        )


@dataclass(frozen=True)
class Step:
    kind: StepKind
    what: str  # for people: the plan and the progress lines
    command: str  # run as root on the host
    input: str | None = None  # the command's stdin (the config text)
    packages: tuple[str, ...] = ()  # what an `install` step installs (named when it fails)


def up_steps(
    engine: Engine, facts: HostFacts, text: str, previous: Record | None
) -> tuple[list[Step], Record]:
    """The steps that make the host run `text` as its enabled, active service, and the
    record to keep. A second run on a host that already matches gets no steps."""
    unit = shlex.quote(engine.unit)
    want = sha256(text)
    fresh_package = not facts.package_installed
    # What was there before rke2ha is decided once, by the first `up`; later runs keep it.
    record = previous or Record(
        engine=engine.name,
        installed_package=fresh_package,
        saved_original=False,
        enabled_unit=facts.enabled != "enabled",
        was_running=facts.running,
        config_sha=want,
    )
    steps: list[Step] = []
    helper = engine.helper
    missing = tuple(m for m in engine.modules if m in facts.missing_modules)
    wanted = ((engine.package,) if fresh_package else ()) + missing
    if missing:
        added = tuple(m for m in missing if m not in record.installed_modules)
        record = _with(record, installed_modules=record.installed_modules + added)
    if wanted:
        names = " ".join(shlex.quote(p) for p in wanted)
        install = f"{APT} install -y -q {names}"
        # Package lists may be stale or absent (a fresh image): read them once and try again.
        steps.append(
            Step(
                "install",
                f"install package {' '.join(wanted)}",
                f"{install} || {{ {APT} update -q; {install}; }}",
                packages=wanted,
            )
        )
    # The helper goes first: the config's check may look for it (keepalived's script check).
    if helper is not None and facts.helper_sha != sha256(helper[1]):
        steps.append(
            Step("helper", f"install {helper[0]}",
                 f"umask 022 && cat > {shlex.quote(helper[0])} && chmod 0755 "
                 f"{shlex.quote(helper[0])}", input=helper[1])
        )  # fmt: skip
    changed = bool(wanted) or facts.config_sha != want
    umask = "077" if engine.mode == "0600" else "022"
    if changed:
        staged = shlex.quote(engine.staged)
        steps += [
            Step("upload", f"upload the config to {engine.staged}",
                 f"umask {umask} && cat > {staged}", input=text),
            Step("check", f"check it with the host's {engine.binary}",
                 engine.check_command(engine.staged)),
        ]  # fmt: skip
        # Only the first run finds the host's own config: on a later one the file there is
        # rke2ha's (had there been one of the host's, the first run saved it).
        keep = not record.installed_package and facts.config_sha is not None
        if keep and previous is None:
            if facts.original_sha is None:  # else a copy from an earlier run waits there
                steps.append(
                    Step(
                        "save_original",
                        f"keep the host's own config as {engine.original}",
                        f"cp -p {shlex.quote(engine.config)} {shlex.quote(engine.original)}",
                    )
                )
            record = _with(record, saved_original=True)
        steps.append(
            Step("replace", f"move it over {engine.config}",
                 f"chmod {engine.mode} {staged} && mv -f {staged} {shlex.quote(engine.config)}")
        )  # fmt: skip
    if facts.enabled != "enabled":
        steps.append(Step("enable", f"enable {engine.unit}", f"systemctl enable {unit}"))
    if fresh_package:
        # The package's own scripts may have started it (Debian does) on its default config.
        steps.append(
            Step("restart", f"start {engine.unit} on the new config",
                 f"systemctl reload-or-restart {unit}")
        )  # fmt: skip
    elif not facts.running:
        steps.append(Step("start", f"start {engine.unit}", f"systemctl start {unit}"))
    elif changed:
        steps.append(Step("reload", f"reload {engine.unit}", f"systemctl reload {unit}"))
    if steps:
        steps.append(Step("verify", f"{engine.unit} is active", f"systemctl is-active {unit}"))
    return steps, _with(record, config_sha=want)


def down_steps(engine: Engine, facts: HostFacts, record: Record) -> tuple[list[Step], list[str]]:
    """The steps that leave the host as rke2ha found it, and notes on what stays."""
    unit = shlex.quote(engine.unit)
    config, original = shlex.quote(engine.config), shlex.quote(engine.original)
    notes: list[str] = []
    helper = engine.helper
    drop_helper = (
        [Step("remove_helper", f"remove {helper[0]}", f"rm -f {shlex.quote(helper[0])}")]
        if helper is not None and facts.helper_sha is not None
        else []
    )
    modules = record.installed_modules
    if record.installed_package:
        names = (engine.package, *modules)
        return [
            Step("stop", f"stop {engine.unit}", f"systemctl stop {unit}"),
            Step(
                "purge",
                f"purge package {' '.join(names)} (rke2ha installed it)",
                f"{APT} purge -y -q {' '.join(shlex.quote(n) for n in names)}"
                f" && rm -f {original} {shlex.quote(engine.staged)}",
            ),
            *drop_helper,
        ], notes
    steps: list[Step] = []
    if not record.was_running and facts.running:
        steps.append(Step("stop", f"stop {engine.unit}", f"systemctl stop {unit}"))
    ours = facts.config_sha == record.config_sha
    if not ours and facts.config_sha is not None:
        notes.append(
            f"{engine.config} was changed after rke2ha wrote it; left as it is"
            + (f" (the original stays at {engine.original})" if facts.original_sha else "")
        )
    elif record.saved_original and facts.original_sha is not None:
        steps.append(
            Step("restore", f"put the host's own config back from {engine.original}",
                 f"mv -f {original} {config}")
        )  # fmt: skip
    elif ours:
        steps.append(
            Step("remove_config", f"remove {engine.config} (there was none)", f"rm -f {config}")
        )
    if record.enabled_unit and facts.enabled == "enabled":
        steps.append(Step("disable", f"disable {engine.unit}", f"systemctl disable {unit}"))
    if modules:
        steps.append(
            Step("purge", f"purge package {' '.join(modules)} (rke2ha installed it)",
                 f"{APT} purge -y -q {' '.join(shlex.quote(m) for m in modules)}")
        )  # fmt: skip
    if record.was_running:
        steps.append(
            Step("restart", f"reload {engine.unit} with the host's own config",
                 f"systemctl reload-or-restart {unit}")
        )  # fmt: skip
    return steps + drop_helper, notes


def _with(record: Record, **changes: Any) -> Record:
    return Record(**{**record.attrs(), **changes})
