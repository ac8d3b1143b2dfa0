"""The state file and its lock: what a provider made, so `plan`, `up` and `down` agree.

`.rke2ha/<name>.state.json` holds a format version, a serial that grows with every write,
the cluster's owner id (the value of every `rke2ha:owner` tag) and one entry per resource
address: its kind, its provider id and a status. A `pending` entry is written *before* a
resource is created, so a run that dies between the cloud call and the bookkeeping leaves a
trace: the next run looks the resource up by its tags and either adopts it or creates it.

Writes are atomic (temporary file in the same folder, fsync, rename): a crash leaves the
old state or the new one, never half of either. The lock (`.rke2ha/<name>.lock`) is created
with O_EXCL and names who holds it, for what and since when; a lock whose process is gone
(same host, pid no longer running) is stale and is broken with a notice, any other lock
needs `--force-unlock`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rke2ha.errors import InvalidError, UsageError

STATE_VERSION = 1
Status = Literal["pending", "created"]


@dataclass
class ResourceEntry:
    """One resource the provider made (or was about to make: `pending`)."""

    kind: str
    id: str | None
    status: Status
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "status": self.status, "attrs": self.attrs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResourceEntry:
        status = data.get("status", "created")
        if status not in ("pending", "created"):
            raise ValueError(f"unknown status {status!r}")
        return cls(
            kind=str(data["kind"]),
            id=None if data.get("id") is None else str(data["id"]),
            status=status,
            attrs=dict(data.get("attrs") or {}),
        )


@dataclass
class State:
    """The content of a state file."""

    cluster: str
    provider: str
    owner: str
    serial: int = 0
    resources: dict[str, ResourceEntry] = field(default_factory=dict)
    # The spec the resources were last applied from (`specdiff.spec_record`: file, digest,
    # fields), so a plan names the fields that changed and another spec is recognised.
    spec: dict[str, Any] | None = None
    # Nodes taken out of the load balancer by `rke2ha lb drain` (sorted): every config
    # `up` renders and every reload it does keeps them out until `lb enable`.
    drained: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[str]:
        """Addresses whose creation was started but not recorded as finished."""
        return sorted(a for a, e in self.resources.items() if e.status == "pending")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "serial": self.serial,
            "cluster": self.cluster,
            "provider": self.provider,
            "owner": self.owner,
            "resources": {a: e.to_json() for a, e in sorted(self.resources.items())},
            **({"spec": self.spec} if self.spec is not None else {}),
            **({"drained": sorted(self.drained)} if self.drained else {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> State:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"state version {version!r}; this rke2ha reads {STATE_VERSION}")
        resources = data.get("resources") or {}
        if not isinstance(resources, dict):
            raise ValueError("resources is not an object")
        return cls(
            cluster=str(data["cluster"]),
            provider=str(data["provider"]),
            owner=str(data["owner"]),
            serial=int(data["serial"]),
            resources={str(a): ResourceEntry.from_json(e) for a, e in resources.items()},
            spec=data["spec"] if isinstance(data.get("spec"), dict) else None,
            drained=sorted(str(n) for n in data.get("drained") or []),
        )


def new_owner_id() -> str:
    """A fresh owner id: tags carry it, so two same-named clusters never mix."""
    return secrets.token_hex(6)


class StateStore:
    """Load and save one cluster's state file under `state_dir` (atomic writes)."""

    def __init__(self, state_dir: Path, cluster: str) -> None:
        self.state_dir = state_dir
        self.cluster = cluster
        self.path = state_dir / f"{cluster}.state.json"

    def load(self) -> State | None:
        """The saved state, or None when there is none yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise UsageError(f"{self.path}: cannot read state file: {err.strerror}") from None
        try:
            return State.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidError(
                f"{self.path}: state file is damaged ({err}); restore it from a backup "
                "(the previous version is kept as .backup beside it)"
            ) from None

    def load_or_new(self, provider: str) -> State:
        state = self.load()
        if state is None:
            return State(cluster=self.cluster, provider=provider, owner=new_owner_id())
        if state.cluster != self.cluster:
            raise InvalidError(
                f"{self.path}: state belongs to cluster {state.cluster!r}, not {self.cluster!r}"
            )
        return state

    def save(self, state: State) -> None:
        """Write `state` atomically with serial + 1; the previous file becomes `.backup`."""
        state.serial += 1
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".backup"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self) -> None:
        """Remove the state (after `down` removed everything it listed)."""
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".backup").unlink(missing_ok=True)


# ---- the lock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    who: str
    host: str
    pid: int
    operation: str
    when: str

    def describe(self) -> str:
        return f"{self.who}@{self.host} (pid {self.pid}) for `{self.operation}` since {self.when}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateLock:
    """An exclusive lock on one cluster's state; use `acquire()` as a context manager."""

    def __init__(self, state_dir: Path, cluster: str) -> None:
        self.path = state_dir / f"{cluster}.lock"
        self.notices: list[str] = []

    def holder(self) -> LockInfo | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LockInfo(
                who=str(data["who"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                operation=str(data["operation"]),
                when=str(data["when"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            return LockInfo("unknown", "unknown", 0, "unknown", "unknown (unreadable lock)")

    def _is_stale(self, info: LockInfo) -> bool:
        return info.host == socket.gethostname() and info.pid > 0 and not _pid_alive(info.pid)

    @contextlib.contextmanager
    def acquire(self, operation: str, *, force_unlock: bool = False) -> Iterator[LockInfo]:
        """Hold the lock for `operation`; raise InvalidError naming the holder if taken.

        A state folder made only to hold the lock is removed with it when nothing else was
        put there: `plan`, or an `up` that stops at its confirmation, leaves no trace."""
        folder = self.path.parent
        made_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with self._held(operation, force_unlock) as mine:
                yield mine
        finally:
            if made_folder:
                with contextlib.suppress(OSError):  # not empty: someone needs it now
                    folder.rmdir()

    @contextlib.contextmanager
    def _held(self, operation: str, force_unlock: bool) -> Iterator[LockInfo]:
        mine = LockInfo(
            who=getpass.getuser(),
            host=socket.gethostname(),
            pid=os.getpid(),
            operation=operation,
            when=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                held = self.holder()
                if held is None:
                    continue
                if force_unlock:
                    self.notices.append(f"removed the lock held by {held.describe()}")
                elif self._is_stale(held):
                    self.notices.append(
                        f"removed a stale lock: {held.describe()} is no longer running"
                    )
                else:
                    raise InvalidError(
                        f"state is locked by {held.describe()} ({self.path}); wait for it to "
                        "finish, or if that run is gone, rerun with --force-unlock"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(mine.__dict__, handle)
            break
        else:
            raise InvalidError(f"{self.path}: could not take the state lock; try again")
        try:
            yield mine
        finally:
            self.path.unlink(missing_ok=True)
