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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rke2ha.lbhost.files import (
    DAEMON_RELOAD,
    ORIG,
    FileFacts,
    SideFile,
    changed,
    check_text,
    facts_lines,
    parse_file_facts,
)
from rke2ha.render.keepalived import TRACK_SCRIPT, TRACK_SCRIPT_PATH

StepKind = Literal[
    "install", "upload", "check", "save_original", "replace", "enable", "reload", "start",
    "restart", "stop", "restore", "remove_config", "disable", "purge", "verify", "helper",
    "remove_helper", "mkdir", "daemon_reload", "remove_file", "rmdir",
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

    @property
    def check_file(self) -> str:
        """Where a config naming staged side files (`files.check_text`) is checked."""
        return f"{self.config}.rke2ha-check"

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
    files: FileFacts = field(default_factory=FileFacts)  # the side files asked about

    @property
    def running(self) -> bool:
        return self.active in ("active", "reloading")

    @property
    def service(self) -> str:
        """For the plan: `enabled, active`."""
        return f"{self.enabled}, {self.active}"


def facts_script(engine: Engine, paths: Sequence[str] = ()) -> str:
    """Read-only: `key=value` lines for `parse_facts`; `paths`: side files to read back."""
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
            *facts_lines(paths),
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
        files=parse_file_facts(values),
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
    # Side files (`files.SideFile`) rke2ha put in place: (path, sha256 of what it wrote).
    files: tuple[tuple[str, str], ...] = ()
    saved_files: tuple[str, ...] = ()  # of those, the host had its own: kept at `.rke2ha-orig`
    made_dirs: tuple[str, ...] = ()  # folders rke2ha made for them; `down` removes them empty

    @property
    def file_paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.files)

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
            files=tuple((str(p), str(h)) for p, h in attrs.get("files", ())),
            saved_files=tuple(attrs.get("saved_files", ())),
            made_dirs=tuple(attrs.get("made_dirs", ())),
        )


@dataclass(frozen=True)
class Step:
    kind: StepKind
    what: str  # for people: the plan and the progress lines
    command: str  # run as root on the host
    input: str | None = field(default=None, repr=False)  # the command's stdin (a file's text)
    packages: tuple[str, ...] = ()  # what an `install` step installs (named when it fails)
    cleanup: tuple[str, ...] = ()  # staged files to remove when a `check` step fails


def up_steps(
    engine: Engine,
    facts: HostFacts,
    text: str,
    previous: Record | None,
    files: Sequence[SideFile] = (),
) -> tuple[list[Step], Record]:
    """The steps that make the host run `text` as its enabled, active service, with `files`
    (`files.SideFile`: a certificate, the token's environment file and drop-in) in place,
    and the record to keep. A second run on a host that already matches gets no steps."""
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
    changed_config = bool(wanted) or facts.config_sha != want
    new_files = changed(files, facts.files)
    record, made = _folders(engine, facts, record, new_files)
    steps += made
    steps += [_upload_file(side) for side in new_files]
    umask = "077" if engine.mode == "0600" else "022"
    if changed_config or new_files:
        staged = shlex.quote(engine.staged)
        if changed_config:
            steps.append(
                Step("upload", f"upload the config to {engine.staged}",
                     f"umask {umask} && cat > {staged}", input=text)
            )  # fmt: skip
        steps.append(_check(engine, text, files, new_files))
        # Only the first run finds the host's own config: on a later one the file there is
        # rke2ha's (had there been one of the host's, the first run saved it).
        keep = not record.installed_package and facts.config_sha is not None
        if changed_config and keep and previous is None:
            if facts.original_sha is None:  # else a copy from an earlier run waits there
                steps.append(
                    Step(
                        "save_original",
                        f"keep the host's own config as {engine.original}",
                        f"cp -p {shlex.quote(engine.config)} {shlex.quote(engine.original)}",
                    )
                )
            record = _with(record, saved_original=True)
        for side in new_files:
            record = _replace_file(steps, side, facts.files, record)
        if changed_config:
            steps.append(
                Step("replace", f"move it over {engine.config}",
                     f"chmod {engine.mode} {staged} && mv -f {staged} "
                     f"{shlex.quote(engine.config)}")
            )  # fmt: skip
    wanted_paths = {side.path for side in files}
    dropped: list[Step] = []
    for path, written in record.files:
        if path not in wanted_paths:
            dropped += _undo_file(path, written, facts.files, record)[0]
    steps += dropped
    # A new drop-in counts only after daemon-reload; a new environment only after a restart
    # (and a file the spec no longer asks for may be either).
    unit_files = any(s.dropin for s in new_files) or bool(dropped)
    environment = any(s.restart or s.dropin for s in new_files) or bool(dropped)
    if unit_files:
        steps.append(Step("daemon_reload", "systemctl daemon-reload", DAEMON_RELOAD))
    if facts.enabled != "enabled":
        steps.append(Step("enable", f"enable {engine.unit}", f"systemctl enable {unit}"))
    if environment and (fresh_package or facts.running):
        steps.append(
            Step("restart", f"restart {engine.unit} (a reload keeps its old environment)",
                 f"systemctl restart {unit}")
        )  # fmt: skip
    elif fresh_package:
        # The package's own scripts may have started it (Debian does) on its default config.
        steps.append(
            Step("restart", f"start {engine.unit} on the new config",
                 f"systemctl reload-or-restart {unit}")
        )  # fmt: skip
    elif not facts.running:
        steps.append(Step("start", f"start {engine.unit}", f"systemctl start {unit}"))
    elif changed_config or new_files:
        steps.append(Step("reload", f"reload {engine.unit}", f"systemctl reload {unit}"))
    if steps:
        steps.append(Step("verify", f"{engine.unit} is active", f"systemctl is-active {unit}"))
    kept = tuple(p for p in record.saved_files if p in wanted_paths)
    put = tuple((side.path, side.sha) for side in files)
    return steps, _with(record, config_sha=want, files=put, saved_files=kept)


def _folders(
    engine: Engine, facts: HostFacts, record: Record, new: Sequence[SideFile]
) -> tuple[Record, list[Step]]:
    """Steps making the missing folders of `new` (the engine's own folder comes with its
    package), recorded so `down` removes them again."""
    steps: list[Step] = []
    made = list(record.made_dirs)
    own = engine.config.rsplit("/", 1)[0]
    seen = {own, *facts.files.folders}
    for side in new:
        folder = side.folder
        if folder in seen:
            continue
        seen.add(folder)
        steps.append(
            Step("mkdir", f"create {folder}",
                 f"mkdir -p -m {side.dir_mode} {shlex.quote(folder)}")
        )  # fmt: skip
        if folder not in made:
            made.append(folder)
    return _with(record, made_dirs=tuple(made)), steps


def _upload_file(side: SideFile) -> Step:
    umask = "077" if side.secret else "022"
    what = f"upload {side.path} to {side.staged}" + (
        f" (secret, mode {side.mode}, not shown)" if side.secret else ""
    )
    return Step("upload", what, f"umask {umask} && cat > {shlex.quote(side.staged)}",
                input=side.text)  # fmt: skip


def _check(engine: Engine, text: str, files: Sequence[SideFile], new: Sequence[SideFile]) -> Step:
    """The host's binary checks the new config with the new side files, staged: nothing in
    place is touched until it passes. A variable a side file sets for the engine (the
    health token) gets a stand-in: the check reads the config's syntax, not the value."""
    env = " ".join(f"{s.env}=rke2ha-check" for s in files if s.env)
    prefix = f"{env} " if env else ""
    cleanup = (engine.staged, *(s.staged for s in new))
    what = f"check it with the host's {engine.binary}"
    if not new:
        return Step("check", what, prefix + engine.check_command(engine.staged), cleanup=cleanup)
    path = shlex.quote(engine.check_file)
    command = (
        f"umask 077 && cat > {path} && ( {prefix}{engine.check_command(engine.check_file)}; "
        f"rc=$?; rm -f {path}; exit $rc )"
    )
    # Named are the files the config reads (a certificate); the token's files are not read
    # by the check (its variable gets the stand-in), only by systemd when the unit starts.
    names = ", ".join(s.path for s in new if s.path in text)
    said = f"{what}, with the new {names}" if names else what
    return Step("check", said, command, input=check_text(text, new),
                cleanup=(*cleanup, engine.check_file))  # fmt: skip


def _replace_file(steps: list[Step], side: SideFile, found: FileFacts, record: Record) -> Record:
    """Keep the host's own file at `side.path` once (the first time rke2ha writes there),
    then move the staged copy over it."""
    path, staged = shlex.quote(side.path), shlex.quote(side.staged)
    if side.path not in record.file_paths and found.sha(side.path) is not None:
        if found.original(side.path) is None:
            steps.append(
                Step("save_original", f"keep the host's own {side.path} as {side.original}",
                     f"cp -p {path} {shlex.quote(side.original)}")
            )  # fmt: skip
        if side.path not in record.saved_files:
            record = _with(record, saved_files=(*record.saved_files, side.path))
    steps.append(
        Step("replace", f"move it over {side.path}",
             f"chmod {side.mode} {staged} && chown root:root {staged} && mv -f {staged} {path}")
    )  # fmt: skip
    return record


def _undo_file(
    path: str, written: str, found: FileFacts, record: Record
) -> tuple[list[Step], list[str]]:
    """Put back the host's own file at `path`, or remove rke2ha's; a file someone changed
    since rke2ha wrote it stays (a note says so)."""
    now = found.sha(path)
    quoted, original = shlex.quote(path), shlex.quote(path + ORIG)
    if now is None:
        return [], []
    if now != written:
        kept = f" (the original stays at {path}{ORIG})" if found.original(path) else ""
        return [], [f"{path} was changed after rke2ha wrote it; left as it is{kept}"]
    if path in record.saved_files and found.original(path) is not None:
        return [
            Step("restore", f"put the host's own {path} back", f"mv -f {original} {quoted}")
        ], []
    return [Step("remove_file", f"remove {path}", f"rm -f {quoted}")], []


def _undo_files(facts: HostFacts, record: Record) -> tuple[list[Step], list[str]]:
    """Every side file rke2ha wrote undone, its folders removed when empty, and systemd
    told when a drop-in went."""
    steps: list[Step] = []
    notes: list[str] = []
    for path, written in record.files:
        more, said = _undo_file(path, written, facts.files, record)
        steps += more
        notes += said
    for folder in reversed(record.made_dirs):
        if folder in facts.files.folders:
            # Only when empty: anything another hand put there stays, with its folder.
            steps.append(
                Step("rmdir", f"remove {folder} (rke2ha made it) if empty",
                     f"rmdir --ignore-fail-on-non-empty {shlex.quote(folder)}")
            )  # fmt: skip
    if record.files:
        steps.append(Step("daemon_reload", "systemctl daemon-reload", DAEMON_RELOAD))
    return steps, notes


def down_steps(engine: Engine, facts: HostFacts, record: Record) -> tuple[list[Step], list[str]]:
    """The steps that leave the host as rke2ha found it, and notes on what stays."""
    unit = shlex.quote(engine.unit)
    config, original = shlex.quote(engine.config), shlex.quote(engine.original)
    helper = engine.helper
    drop_helper = (
        [Step("remove_helper", f"remove {helper[0]}", f"rm -f {shlex.quote(helper[0])}")]
        if helper is not None and facts.helper_sha is not None
        else []
    )
    files, notes = _undo_files(facts, record)
    modules = record.installed_modules
    if record.installed_package:
        names = (engine.package, *modules)
        return [
            Step("stop", f"stop {engine.unit}", f"systemctl stop {unit}"),
            *files,
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
    steps += files
    if record.enabled_unit and facts.enabled == "enabled":
        steps.append(Step("disable", f"disable {engine.unit}", f"systemctl disable {unit}"))
    if modules:
        steps.append(
            Step("purge", f"purge package {' '.join(modules)} (rke2ha installed it)",
                 f"{APT} purge -y -q {' '.join(shlex.quote(m) for m in modules)}")
        )  # fmt: skip
    if record.was_running:
        # A restart when rke2ha's files go: the environment it gave the engine goes too.
        how, said = ("restart", "restart") if record.files else ("reload-or-restart", "reload")
        steps.append(
            Step("restart", f"{said} {engine.unit} with the host's own config",
                 f"systemctl {how} {unit}")
        )  # fmt: skip
    return steps + drop_helper, notes


def _with(record: Record, **changes: Any) -> Record:
    return Record(**{**record.attrs(), **changes})
