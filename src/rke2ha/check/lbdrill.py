"""`check --drill --lb`: what one fault of the load balancer pair did. Sans-I/O.

The driver (`lbdrill_run`) runs a bounded request stream through the virtual IP, injects a
fault on the host holding it, and records plain facts: when each request started and
whether it got an answer, when the fault was injected, when the other host was first
seen holding the address, whether the old holder held it again while still faulty, and
whether it took it back once restored. `analyse` turns those into a `FaultReport`
judged against the targets:

- the address moved within `TARGET_SECONDS[fault]` (engine stopped: 3 s, host frozen: 5 s);
- no request that started after the move failed (target 0);
- it never went back to the old holder while that host was still faulty.

Requests that failed and started before the move are "lost": sent to a host whose engine
was gone or frozen, before anything could know. Whether the address came back after the
restore is reported, and for the engine fault it must not (the rendered `nopreempt`:
a host whose checks pass again does not take the address back from a working peer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

LbFault = Literal["engine", "freeze"]
# The targets the pair is built to meet (seconds from the fault until the peer holds it).
TARGET_SECONDS: dict[LbFault, float] = {"engine": 3.0, "freeze": 5.0}
# `{engine}`: `load_balancer.engine` (the pair's engine unit is what the fault touches).
FAULT_WORDS: dict[LbFault, str] = {
    "engine": "{engine} stopped (systemctl stop)",
    "freeze": "keepalived and {engine} frozen (SIGSTOP)",
}


@dataclass(frozen=True)
class LbDrillSettings:
    rate: float = 20.0  # requests per second through the virtual IP
    phase_seconds: float = 8.0  # stream length per fault (bounds the count too)
    fault_after: float = 1.0  # seconds into the stream
    request_timeout: float = 2.0  # a request slower than this failed
    poll_interval: float = 0.1  # how often both hosts' addresses are read
    settle_seconds: float = 4.0  # after the restore: watched for the address coming back
    recover_timeout: float = 15.0  # how long the restored engine may take to have a node UP

    @property
    def requests(self) -> int:
        return max(1, round(self.rate * self.phase_seconds))


@dataclass(frozen=True)
class Request:
    started: float  # seconds from the stream's start
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Observed:
    """What the driver saw during one fault (times in seconds from the stream's start)."""

    fault: LbFault
    holder: str  # the host that held the address and was faulted
    peer: str
    requests: Sequence[Request]
    fault_at: float
    moved_at: float | None  # first poll with the peer holding the address; None: never
    flapped_at: float | None  # old holder held it again while still faulty; None: never
    came_back: bool | None  # it took the address back after the restore; None: not watched
    restore_note: str = ""  # what the restore did, for people


@dataclass
class FaultReport:
    fault: LbFault
    holder: str
    peer: str
    target_seconds: float
    moved_after: float | None
    requests: int
    failed: int
    failed_after_move: int
    flapped_back: bool
    came_back: bool | None
    restore_note: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Failed requests that started before the address moved."""
        return self.failed - self.failed_after_move

    @property
    def moved_in_time(self) -> bool:
        return self.moved_after is not None and self.moved_after < self.target_seconds

    @property
    def problems(self) -> list[str]:
        found = []
        if self.moved_after is None:
            found.append(f"the address never moved to {self.peer}")
        elif not self.moved_in_time:
            found.append(
                f"the address moved after {self.moved_after:.2f}s "
                f"(target < {self.target_seconds:g}s)"
            )
        if self.failed_after_move:
            found.append(f"{self.failed_after_move} requests failed after the move (target 0)")
        if self.flapped_back:
            found.append(f"the address went back to {self.holder} while it was still faulty")
        if self.fault == "engine" and self.came_back:
            found.append(f"the address went back to {self.holder} after the restore (nopreempt)")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), lost=self.lost, ok=self.ok, problems=self.problems)


@dataclass
class LbDrillReport:
    settings: LbDrillSettings
    faults: list[FaultReport]
    engine: str = "haproxy"  # `load_balancer.engine` of the pair

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.faults)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kind": "lb",
            "engine": self.engine,
            "settings": asdict(self.settings),
            "faults": [report.as_dict() for report in self.faults],
        }


def analyse(seen: Observed) -> FaultReport:
    failed = [r for r in seen.requests if not r.ok]
    moved_after = None if seen.moved_at is None else max(0.0, seen.moved_at - seen.fault_at)
    # Without a move every failure counts against the pair: nothing excuses it.
    cutoff = seen.moved_at if seen.moved_at is not None else seen.fault_at
    return FaultReport(
        fault=seen.fault,
        holder=seen.holder,
        peer=seen.peer,
        target_seconds=TARGET_SECONDS[seen.fault],
        moved_after=None if moved_after is None else round(moved_after, 3),
        requests=len(seen.requests),
        failed=len(failed),
        failed_after_move=sum(1 for r in failed if r.started >= cutoff),
        flapped_back=seen.flapped_at is not None,
        came_back=seen.came_back,
        restore_note=seen.restore_note,
        errors=list(dict.fromkeys(r.error for r in failed if r.error))[:3],
    )


def moved(holders: Sequence[str], holder: str, peer: str, fault: LbFault) -> bool:
    """Has the address moved, given the hosts that hold it now?

    Engine stopped: the old holder's keepalived gives it up (FAULT), so the peer alone.
    Frozen: the old holder's keepalived cannot remove it (it is stopped), so the peer
    holding it is the move, whatever the frozen host still lists.
    """
    if fault == "freeze":
        return peer in holders
    return list(holders) == [peer]
