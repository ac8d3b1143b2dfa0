"""`load_balancer.admin`: a loopback HOST:PORT (or empty: off), the same in every engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rke2ha.lb.config import from_spec
from rke2ha.render.haproxy import render_haproxy
from rke2ha.specfile import SpecSchemaError, load_spec


def _load(tmp_path: Path, admin: str):
    document = {
        "name": "rancher",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": f"s{i}", "address": f"10.0.{i}.11"} for i in (1, 2, 3)],
        "load_balancer": {"engine": "haproxy", "address": "10.0.0.10", "admin": admin},
        "dns": {"provider": "manual", "zone": "example.com"},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_spec(path)


@pytest.mark.parametrize(
    ("admin", "words"),
    [
        ("0.0.0.0:8404", "loopback address only"),
        ("10.0.0.10:8404", "loopback address only"),
        ("nonsense", "is not HOST:PORT"),
        ("127.0.0.1:0", "is not HOST:PORT"),
        ("127.0.0.1:70000", "is not HOST:PORT"),
        ("localhost:8404", "loopback address only"),
    ],
)
def test_admin_off_loopback_is_refused(tmp_path: Path, admin: str, words: str) -> None:
    with pytest.raises(SpecSchemaError) as caught:
        _load(tmp_path, admin)
    (problem,) = caught.value.problems
    assert problem.path == "load_balancer.admin"
    assert repr(admin) in problem.message and words in problem.message


@pytest.mark.parametrize(
    ("admin", "bound"), [("127.0.0.2:9000", ("127.0.0.2", 9000)), ("[::1]:8404", ("::1", 8404))]
)
def test_haproxy_and_builtin_bind_the_spec_value(tmp_path: Path, admin: str, bound) -> None:
    spec = _load(tmp_path, admin)
    assert f"bind {admin}\n" in render_haproxy(spec, "spec.yaml")
    assert from_spec(spec).admin == bound


def test_empty_admin_turns_the_stats_page_off(tmp_path: Path) -> None:
    spec = _load(tmp_path, "")
    text = render_haproxy(spec, "spec.yaml")
    assert "frontend stats" not in text and "Stats:" not in text
    assert from_spec(spec).admin is None
