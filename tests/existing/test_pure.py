"""Provider existing without processes: engine commands, process matching, the config
fingerprint, health parsing and the plan's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.existing.conftest import HOSTNAME, existing_spec, merge
from tests.support.certs import write_self_signed

from rke2ha.errors import InvalidError, UsageError
from rke2ha.providers.base import ProviderOptions
from rke2ha.providers.existing.configs import engine_config
from rke2ha.providers.existing.engines import (
    EnginePaths,
    check_argv,
    is_our_process,
    start_argv,
)
from rke2ha.providers.existing.health import builtin_counts, haproxy_counts
from rke2ha.providers.existing.provider import ExistingProvider
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

PATHS = EnginePaths.under(Path("/srv/lb/.rke2ha"), "haproxy")


def _load(tmp_path: Path, spec: dict[str, Any]) -> Spec:
    path = tmp_path / "rke2ha.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_spec(path)


def test_engines_run_on_the_current_link_with_their_own_pid_files() -> None:
    haproxy = start_argv("haproxy", "/usr/sbin/haproxy", PATHS)
    assert haproxy == [
        "/usr/sbin/haproxy",
        "-W",
        "-D",
        "-p",
        "/srv/lb/.rke2ha/existing/haproxy/haproxy.pid",
        "-f",
        "/srv/lb/.rke2ha/existing/haproxy/current/haproxy/haproxy.cfg",
    ]
    nginx_paths = EnginePaths.under(Path("/srv/lb/.rke2ha"), "nginx")
    nginx = start_argv("nginx", "/usr/sbin/nginx", nginx_paths)
    assert "-g" in nginx and "pid /srv/lb/.rke2ha/existing/nginx/nginx.pid;" in nginx
    assert "-e" in nginx  # never the system error log
    version = PATHS.version_dir("ab" * 32) / "haproxy/haproxy.cfg"
    assert check_argv("haproxy", "haproxy", version, PATHS) == ["haproxy", "-c", "-f", str(version)]
    assert check_argv("nginx", "nginx", version, nginx_paths)[:2] == ["nginx", "-t"]


def test_only_our_engine_on_our_config_matches() -> None:
    config = str(PATHS.running_config)
    assert is_our_process("haproxy", f"/usr/sbin/haproxy -W -D -p x -f {config}", PATHS)
    # the system HAProxy, or ours of another state folder, is never ours
    assert not is_our_process("haproxy", "/usr/sbin/haproxy -f /etc/haproxy/haproxy.cfg", PATHS)
    assert not is_our_process("haproxy", f"/usr/bin/vi {config}", PATHS)
    nginx = EnginePaths.under(Path("/srv/lb/.rke2ha"), "nginx")
    title = f"nginx: master process /usr/sbin/nginx -c {nginx.running_config} -e x"
    assert is_our_process("nginx", title, nginx)
    builtin = EnginePaths.under(Path("/srv/lb/.rke2ha"), "builtin")
    line = f"/venv/bin/python3 -m rke2ha lb serve -f {builtin.running_config} --access-log a"
    assert is_our_process("builtin", line, builtin)
    assert not is_our_process("builtin", f"/venv/bin/python3 -m rke2ha check -f {builtin}", builtin)


def test_fingerprint_follows_the_engine_config_only(tmp_path: Path) -> None:
    base = existing_spec("haproxy")
    first = engine_config(_load(tmp_path, base))
    assert first == engine_config(_load(tmp_path, base))  # same spec, same bytes
    slower = engine_config(
        _load(tmp_path, merge(base, {"load_balancer": {"balance": "roundrobin"}}))
    )
    assert slower.fingerprint != first.fingerprint
    # the built-in engine ignores what it does not read (the DNS TTL)
    builtin = existing_spec("builtin")
    ttl = merge(builtin, {"dns": {"ttl": 300}})
    assert (
        engine_config(_load(tmp_path, builtin)).fingerprint
        == engine_config(_load(tmp_path, ttl)).fingerprint
    )


def test_engines_provider_existing_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="aws-nlb needs provider aws"):
        engine_config(_load(tmp_path, existing_spec("aws-nlb")))
    layer7 = merge(existing_spec("builtin"), {"load_balancer": {"layer": 7}})
    with pytest.raises(InvalidError, match=r"load_balancer\.tls is not set"):
        engine_config(_load(tmp_path, layer7))


def _layer7(tmp_path: Path, **load_balancer: Any) -> Spec:
    tls = {"cert": "tls.crt", "key": "tls.key"}
    extra = {"layer": 7, "tls": tls, **load_balancer}
    return _load(tmp_path, merge(existing_spec("builtin"), {"load_balancer": extra}))


def test_builtin_layer7_version_copies_the_certificate_and_changes_with_what_it_runs(
    tmp_path: Path,
) -> None:
    write_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", HOSTNAME)
    first = engine_config(_layer7(tmp_path))
    files = first.files.files
    assert files["builtin/tls.crt"].text == (tmp_path / "tls.crt").read_text()
    assert files["builtin/tls.key"].secret and not files["builtin/tls.crt"].secret
    # The copy names the certificate through `current`: SIGHUP re-reads those paths.
    copied = yaml.safe_load(files["builtin/lb-spec.yaml"].text)["load_balancer"]["tls"]
    current = tmp_path / ".rke2ha/existing/builtin/current/builtin"
    assert copied == {"cert": str(current / "tls.crt"), "key": str(current / "tls.key")}
    assert first == engine_config(_layer7(tmp_path))
    # Every change the engine runs makes a new version (a SIGHUP applies each of them).
    slower = engine_config(_layer7(tmp_path, health={"interval": "2s"}))
    redirect = engine_config(_layer7(tmp_path, redirect_code=301))
    write_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", HOSTNAME)
    renewed = engine_config(_layer7(tmp_path))
    prints = {c.fingerprint for c in (first, slower, redirect, renewed)}
    assert len(prints) == 4


def test_builtin_layer7_bad_certificate_names_the_field(tmp_path: Path) -> None:
    write_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", "other.example.test")
    with pytest.raises(InvalidError, match=r"^load_balancer\.tls\.cert: .*does not cover"):
        engine_config(_layer7(tmp_path))
    write_self_signed(tmp_path / "tls.crt", tmp_path / "unused.key", HOSTNAME)
    with pytest.raises(InvalidError, match=r"^load_balancer\.tls\.key: .*does not belong"):
        engine_config(_layer7(tmp_path))
    (tmp_path / "tls.crt").unlink()
    with pytest.raises(UsageError, match=r"load_balancer\.tls\.cert"):
        engine_config(_layer7(tmp_path))


def test_haproxy_csv_counts_servers_per_backend() -> None:
    csv_text = (
        "# pxname,svname,qcur,status\n"
        "stats,FRONTEND,,OPEN\n"
        "rke2ha_80,FRONTEND,,OPEN\n"
        "rke2ha_80,node-1,0,UP\n"
        "rke2ha_80,node-2,0,DOWN\n"
        "rke2ha_80,node-3,0,UP 1/2\n"
        "rke2ha_80,BACKEND,0,UP\n"
    )
    assert haproxy_counts(csv_text) == {"rke2ha_80": (2, 3)}


def test_builtin_status_counts_serving_backends() -> None:
    snapshot = {
        "frontends": [
            {"name": "port-80", "backends": [{"serves": True}, {"serves": False}, {"state": "up"}]}
        ]
    }
    assert builtin_counts(snapshot) == {"port-80": (2, 3)}
    assert builtin_counts("not a snapshot") == {}


def test_plan_on_a_fresh_host_starts_the_engine_before_publishing(tmp_path: Path) -> None:
    provider = ExistingProvider(_load(tmp_path, existing_spec("haproxy")), ProviderOptions())
    facts = provider.describe()
    plan = provider.plan(facts)
    assert [(c.action, c.address) for c in plan.changes] == [
        ("create", "load_balancer.engine"),
        ("create", "dns_record.hostname"),
    ]
    assert any("manual" in note for note in plan.notes)
    assert not (tmp_path / ".rke2ha").exists() or not any((tmp_path / ".rke2ha").iterdir())
