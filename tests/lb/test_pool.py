"""Backend selection, retries bookkeeping and reconfiguration (pure)."""

from __future__ import annotations

from collections import Counter

from rke2ha.lb.config import BackendConfig
from rke2ha.lb.health_state import Event, State
from rke2ha.lb.pool import Attempt, Pool

B = [BackendConfig(f"10.9.0.{i}", 80, f"n{i}") for i in (1, 2, 3)]


def test_leastconn_prefers_the_least_loaded_and_spreads_ties() -> None:
    pool = Pool(B, rise=2, fall=2)
    picks = []
    for _ in range(9):
        backend = pool.pick(Attempt(2))
        assert backend is not None
        backend.active += 1
        picks.append(backend.key)
    assert Counter(picks) == {b.key: 3 for b in B}
    pool.backends[0].active = 0
    assert pool.pick(Attempt(2)) is pool.backends[0]


def test_roundrobin_cycles() -> None:
    pool = Pool(B, rise=2, fall=2, balance="roundrobin")
    keys = [pool.pick(Attempt(0)).key for _ in range(6)]  # type: ignore[union-attr]
    assert Counter(keys) == {b.key: 2 for b in B}


def test_attempt_skips_tried_and_down_backends_and_is_bounded() -> None:
    pool = Pool(B, rise=2, fall=2)
    attempt = Attempt(retries=1)
    first = pool.pick(attempt)
    assert first is not None
    pool.connect_failed(first, "ECONNREFUSED")
    assert first.state is State.DOWN and first.connect_failures == 1
    second = pool.pick(attempt)
    assert second is not None and second is not first and attempt.failover
    assert pool.pick(attempt) is None  # 1 + retries tries used


def test_no_serving_backend() -> None:
    pool = Pool(B[:1], rise=1, fall=1)
    pool.backends[0].handle(Event.CHECK_FAIL, "x")
    assert pool.pick(Attempt(3)) is None


def test_update_joins_and_drains_then_forgets_idle() -> None:
    changes = []
    pool = Pool(B[:2], rise=2, fall=2, listener=lambda b, c: changes.append((b.key, c.new)))
    pool.backends[0].active = 1
    joined, leaving = pool.update([B[1], B[2]], now=5.0)
    assert [b.key for b in joined] == [B[2].key]
    assert [b.key for b in leaving] == [B[0].key]
    assert leaving[0].state is State.DRAINING and leaving[0].removed_at == 5.0
    assert (B[0].key, State.DRAINING) in changes
    assert {b.key for b in pool.backends} == {B[1].key, B[2].key}
    assert pool.forget_idle_drained() == []
    leaving[0].active = 0
    assert pool.forget_idle_drained() == leaving
    for _ in range(6):
        picked = pool.pick(Attempt(0))
        assert picked is not None and picked.key != B[0].key
