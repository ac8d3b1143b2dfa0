"""`up` of RKE2 on three nodes through `Rke2Servers`, the nodes faked at the SSH adapter
(fakenode.py): plan symbols, order and gates, records before and after every step, a run
killed at every command and then finished, corrupted artifacts, refused upgrades,
down --uninstall-rke2 only where rke2ha installed."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.rke2node.fakenode import FakeConnection, Killed, Node, V, World

from rke2ha.errors import InvalidError
from rke2ha.plan import Plan, diff
from rke2ha.providers.base import Facts, SilentReporter
from rke2ha.providers.existing.servers import Rke2Servers, kubeconfig_path, refused_for_token
from rke2ha.rke2node import gate
from rke2ha.specfile import spec_from_source
from rke2ha.ssh import connection
from rke2ha.state import StateStore
from rke2ha.yamlsource import YamlSource

NAMES = ("node-1", "node-2", "node-3")


def _release(folder: Path) -> None:
    folder.mkdir()
    blobs = {"rke2.linux-amd64.tar.gz": b"tar", "rke2-images.linux-amd64.tar.zst": b"img"}
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    (folder / "install.sh").write_text("#!/bin/sh\n")
    (folder / "sha256sum-amd64.txt").write_text(
        "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in blobs.items())
    )


@pytest.fixture
def spec(tmp_path: Path) -> Any:
    _release(tmp_path / "artifacts")
    data = {
        "name": "prod",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [{"name": n, "address": f"198.18.0.{11 + i}"} for i, n in enumerate(NAMES)],
        "load_balancer": {"address": "198.18.0.10"},
        "dns": {"provider": "manual", "zone": "example.com"},
        "ssh": {"user": "root", "known_hosts": "known_hosts"},
        "rke2": {
            "install": "airgap",
            "version": V,
            "airgap": {"artifacts": "artifacts"},
            "anonymous_health": True,
        },
        "rancher": {"tls_source": "external"},
    }
    return spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    made = World({n: Node(n) for n in NAMES})

    async def connect(target: Any, accept_new_host_keys: bool = False) -> FakeConnection:
        made.tick()
        return FakeConnection(made, target)

    def waiting_for(client: Any, address: str, node: str) -> str | None:
        if made.ready(node):
            made.events.append((node, "ready"))
            return None
        return "node not Ready yet"

    monkeypatch.setattr(connection, "connect", connect)
    monkeypatch.setattr(gate, "Client", lambda creds: creds)
    monkeypatch.setattr(gate, "waiting_for", waiting_for)
    monkeypatch.setattr(gate, "via_hostname", lambda client, lb, hostname: None)
    return made


def _servers(spec: Any, **kw: Any) -> Rke2Servers:
    store = StateStore(spec.state_dir, spec.name)
    state = store.load_or_new("existing")
    return Rke2Servers(spec, state, store, ready_timeout=0.3, poll=0.01, **kw)


def _plan(servers: Rke2Servers) -> Plan:
    facts = Facts({})
    servers.describe(facts)
    plan = diff(servers.desired(), facts.observed)
    servers.explain(plan)
    return plan


def up(spec: Any, **kw: Any) -> Plan:
    servers = _servers(spec, **kw)
    plan = _plan(servers)
    artifacts = servers.check_before_apply(plan)
    for change in plan.changes:
        servers.apply(change, SilentReporter(), artifacts)
    return plan


def test_plan_shows_every_node_then_the_kubeconfig(spec, world):
    plan = _plan(_servers(spec))
    assert [(c.symbol, c.address) for c in plan.changes] == [
        ("+", "rke2.servers.node-1"),
        ("+", "rke2.servers.node-2"),
        ("+", "rke2.servers.node-3"),
        ("+", "kubeconfig"),
    ]
    assert plan.changes[0].after == {
        "version": V,
        "config": plan.changes[0].after["config"],  # type: ignore[index]
        "service": "enabled, active, ready",
    }
    assert world.events == []  # plan changes nothing


def test_up_installs_one_node_at_a_time_and_a_second_up_changes_nothing(spec, world):
    plan = up(spec)
    assert len(plan.changes) == 4
    starts_and_readies = [(n, e) for n, e in world.events if e in ("start", "ready")]
    # Each server starts only after the one before it is ready: never two joins at once.
    order = [(n, "start") for n in NAMES]
    positions = [starts_and_readies.index(item) for item in order]
    for earlier, later in itertools.pairwise(NAMES):
        ready_at = starts_and_readies.index((earlier, "ready"))
        assert ready_at < starts_and_readies.index((later, "start"))
    assert positions == sorted(positions)
    for name in NAMES:
        node = world.nodes[name]
        assert node.installs == 1 and node.uploads == {}  # the upload folder removed
        config = yaml.safe_load(node.files["/etc/rancher/rke2/config.yaml"])
        assert ("server" in config) == (name != "node-1")
        assert config["tls-san"][0] == "rancher.example.com"
        # The ingress config is in place before the first start.
        events = [e for n, e in world.events if n == name]
        manifest = "write /var/lib/rancher/rke2/server/manifests/rke2ha-ingress-config.yaml"
        assert events.index(manifest) < events.index("start")
    path = kubeconfig_path(spec)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kube = yaml.safe_load(path.read_text())
    assert kube["clusters"][0]["cluster"]["server"] == "https://rancher.example.com:6443"
    assert kube["current-context"] == "prod"
    state = StateStore(spec.state_dir, spec.name).load_or_new("existing")
    assert {k: (e.status, e.attrs["installed"], e.attrs["first"]) for k, e in
            state.resources.items() if k.startswith("rke2.")} == {
        "rke2.servers.node-1": ("created", True, True),
        "rke2.servers.node-2": ("created", True, False),
        "rke2.servers.node-3": ("created", True, False),
    }  # fmt: skip
    before = len(world.events)
    assert up(spec).changes == []
    assert [e for e in world.events[before:] if e[1] != "ready"] == []


def test_a_run_killed_at_any_command_finishes_on_the_next_run(spec, world, tmp_path):
    # Count the commands of a whole run, then kill a fresh run at each of them in turn.
    up(spec)
    total = world.commands
    for kill_at in range(1, total + 1, 3):
        for name in NAMES:
            world.nodes[name] = Node(name)
        world.events.clear()
        world.commands, world.kill_at = 0, kill_at
        StateStore(spec.state_dir, spec.name).delete()
        kubeconfig_path(spec).unlink(missing_ok=True)
        with pytest.raises(Killed):
            up(spec)
        world.kill_at = None
        up(spec)
        for name in NAMES:
            node = world.nodes[name]
            assert node.active == "active", (kill_at, name)
            assert node.installs == 1, (kill_at, name)  # never reinstalled
        state = StateStore(spec.state_dir, spec.name).load_or_new("existing")
        assert [k for k, e in state.resources.items() if e.attrs.get("first")] == [
            "rke2.servers.node-1"
        ]
        assert all(e.status == "created" for e in state.resources.values()), kill_at
        assert up(spec).changes == [], kill_at


def test_the_state_says_install_started_before_install_sh_runs(spec, world, monkeypatch):
    seen: list[str] = []
    original = FakeConnection.run

    async def spy(self: FakeConnection, command: str, **kw: Any) -> Any:
        if "INSTALL_RKE2_ARTIFACT_PATH" in command:
            state = StateStore(spec.state_dir, spec.name).load_or_new("existing")
            entry = state.resources[f"rke2.servers.{self.node.name}"]
            seen.append(f"{entry.status} {entry.attrs['step']} {entry.attrs['installed']}")
        return await original(self, command, **kw)

    monkeypatch.setattr(FakeConnection, "run", spy)
    up(spec)
    assert seen == ["pending install: started True"] * 3


def test_a_corrupted_artifact_stops_before_any_node_is_touched(spec, world, tmp_path):
    (tmp_path / "artifacts" / "rke2.linux-amd64.tar.gz").write_bytes(b"tar!")
    with pytest.raises(InvalidError, match=r"rke2.linux-amd64.tar.gz does not match"):
        up(spec)
    assert world.events == []
    assert all(n.uploads == {} and n.files == {} for n in world.nodes.values())


def test_an_upload_changed_on_the_way_is_removed_and_nothing_installed(spec, world):
    world.nodes["node-1"].corrupt_upload = True
    with pytest.raises(InvalidError, match=r"node node-1: rke2-images.linux-amd64.tar.zst arrived"):
        up(spec)
    node = world.nodes["node-1"]
    assert node.uploads == {} and node.installs == 0 and node.files == {}


def test_another_version_is_refused_before_anything_changes(spec, world):
    up(spec)
    world.nodes["node-2"].version = "v1.32.1+rke2r1"
    servers = _servers(spec)
    plan = _plan(servers)
    change = next(c for c in plan.changes if c.address == "rke2.servers.node-2")
    assert change.symbol == "~" and "upgrades are not supported yet" in (change.reason or "")
    before = len(world.events)
    with pytest.raises(InvalidError, match=r"node-2 runs RKE2 v1.32.1"):
        servers.check_before_apply(plan)
    assert world.events[before:] == []


def test_a_joiner_with_a_wrong_token_is_named_with_its_journal(spec, world):
    world.refuse_token = {"node-2"}
    with pytest.raises(InvalidError) as err:
        up(spec)
    text = str(err.value)
    assert text.startswith("node node-2 did not become ready")
    assert "token CA hash does not match" in text
    assert "its token is not the cluster's" in text
    assert world.nodes["node-3"].installs == 0  # the next server was not touched


def _hand_installed(spec: Any, node: Node) -> None:
    """RKE2 someone else installed, with exactly the files rke2ha would write."""
    servers = _servers(spec)
    servers.token.keep()  # the cluster's token: the one the spec's later runs read back
    files = servers.files(node.name)
    node.version = V
    node.files["/etc/rancher/rke2/config.yaml"] = files.config
    if files.authn is not None:
        node.files["/etc/rancher/rke2/authentication-config.yaml"] = files.authn


def test_uninstall_only_where_rke2ha_installed(spec, world):
    # RKE2 someone else installed with the same release and config: adopted, never removed.
    _hand_installed(spec, world.nodes["node-3"])
    up(spec)
    assert world.nodes["node-3"].installs == 0
    plain = _servers(spec)
    assert plain.destroy_observed() == {}
    servers = _servers(spec, uninstall=True)
    found = servers.destroy_observed()
    assert sorted(found) == ["kubeconfig", "rke2.servers.node-1", "rke2.servers.node-2"]
    from rke2ha.plan import destroy_plan
    from rke2ha.providers.existing.provider import KIND_RANK

    changes = destroy_plan(found, kind_rank=KIND_RANK).changes
    assert changes[0].address == "kubeconfig"
    for change in changes:
        servers.destroy(change, SilentReporter())
    # Joiners before the first server.
    assert [n for n, e in world.events if e == "uninstall"] == ["node-2", "node-1"]
    assert world.nodes["node-3"].version == V
    assert not kubeconfig_path(spec).exists()


def test_merge_kubeconfig_keeps_other_contexts(spec, world, tmp_path):
    home = tmp_path / "home-kube"
    home.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": {"server": "https://dev:6443"}}],
                "users": [{"name": "dev", "user": {"token": "x"}}],
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}}],
                "current-context": "dev",
            }
        )
    )
    up(spec, merge_kubeconfig=True, home_kubeconfig=home)
    merged = yaml.safe_load(home.read_text())
    assert [c["name"] for c in merged["contexts"]] == ["dev", "prod"]
    assert merged["current-context"] == "dev"
    assert stat.S_IMODE(home.stat().st_mode) == 0o600


def test_a_reordered_node_list_is_refused(spec, world, tmp_path):
    up(spec)
    data = spec.model_dump(mode="json", exclude_none=True)
    data["nodes"] = list(reversed(data["nodes"]))
    other = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    with pytest.raises(InvalidError, match=r"started on node-1.*put node-1 first"):
        _plan(_servers(other))


def test_the_provider_plans_rke2_after_the_load_balancer_and_plain_down_leaves_it(spec, world):
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.existing.provider import ExistingProvider

    provider = ExistingProvider(spec, ProviderOptions())
    plan = provider.plan(provider.describe())
    addresses = [c.address for c in plan.changes]
    assert addresses[:2] == ["load_balancer.engine", "dns_record.hostname"]
    assert addresses[2:] == [*(f"rke2.servers.{n}" for n in NAMES), "kubeconfig"]
    up(spec)
    down = ExistingProvider(spec, ProviderOptions())
    plan = down.plan_destroy(down.describe())
    assert plan.changes == []
    assert any("--uninstall-rke2" in note for note in plan.notes)
    uninstall = ExistingProvider(spec, ProviderOptions(uninstall_rke2=True))
    plan = uninstall.plan_destroy(uninstall.describe())
    assert [c.address for c in plan.changes] == [
        "kubeconfig",
        "rke2.servers.node-3",
        "rke2.servers.node-2",
        "rke2.servers.node-1",
    ]
    assert any("deletes /etc/rancher/rke2" in note for note in plan.notes)


def test_a_hostname_missing_from_the_certificate_is_an_error_naming_tls_san(
    spec, world, monkeypatch
):
    said = "certificate not accepted: Hostname mismatch, certificate is not valid for 'x'"
    monkeypatch.setattr(gate, "via_hostname", lambda client, lb, hostname: said)
    with pytest.raises(InvalidError) as err:
        up(spec)
    assert "does not carry rancher.example.com (tls-san)" in str(err.value)
    assert "fix: add it to tls-san of every server" in str(err.value)


def test_a_load_balancer_not_answering_6443_is_only_a_note(spec, world, monkeypatch):
    monkeypatch.setattr(gate, "via_hostname", lambda client, lb, hostname: "Connection refused")
    up(spec)
    assert kubeconfig_path(spec).is_file()


def test_install_sh_failing_names_the_node_with_its_last_lines(spec, world):
    world.nodes["node-2"].install_fails = True
    with pytest.raises(InvalidError) as err:
        up(spec)
    text = str(err.value)
    assert text.startswith("node node-2: install.sh failed")
    assert "[ERROR]  no space left on device" in text
    assert world.nodes["node-2"].uploads == {}  # the upload folder removed
    assert world.nodes["node-3"].installs == 0
    entry = StateStore(spec.state_dir, spec.name).load_or_new("existing").resources
    # Recorded as possibly installed: down --uninstall-rke2 may clean it up.
    assert entry["rke2.servers.node-2"].attrs["installed"] is True
    assert entry["rke2.servers.node-2"].status == "pending"


@pytest.mark.parametrize("local", [True, False])
def test_online_installs_the_pinned_version_with_a_local_or_downloaded_install_sh(
    spec, world, tmp_path, local
):
    data = spec.model_dump(mode="json", exclude_none=True)
    data["rke2"]["install"] = "online"
    if local:
        (tmp_path / "online").mkdir()
        (tmp_path / "online" / "install.sh").write_text("#!/bin/sh\n")
        data["rke2"]["airgap"] = {"artifacts": "online"}
    else:
        del data["rke2"]["airgap"]
    online = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    up(online)
    installs = [e for n, e in world.events if e.startswith("install online")]
    script = "/tmp/rke2ha-artifacts.x1/install.sh" if local else "-"
    assert installs == [f"install online {script}"] * 3
    uploads = [e for n, e in world.events if e.startswith("upload")]
    assert uploads == (["upload install.sh"] * 3 if local else [])
    assert all(n.version == V for n in world.nodes.values())


def test_an_upload_folder_a_killed_run_left_is_removed(spec, world):
    world.nodes["node-2"].uploads["/tmp/rke2ha-artifacts.old/rke2.linux-amd64.tar.gz"] = b"x"
    up(spec)
    assert world.nodes["node-2"].leftovers_removed == 1
    assert world.nodes["node-2"].uploads == {}


def test_uninstall_refuses_a_node_whose_address_changed_since_install(spec, world, tmp_path):
    up(spec)
    data = spec.model_dump(mode="json", exclude_none=True)
    data["nodes"][1]["address"] = "198.18.0.99"
    moved = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    servers = _servers(moved, uninstall=True)
    from rke2ha.plan import destroy_plan
    from rke2ha.providers.existing.provider import KIND_RANK

    changes = destroy_plan(servers.destroy_observed(), kind_rank=KIND_RANK).changes
    change = next(c for c in changes if c.address == "rke2.servers.node-2")
    with pytest.raises(InvalidError, match=r"on 198.18.0.12 \(state file\).*at 198.18.0.99"):
        servers.destroy(change, SilentReporter())
    assert [e for e in world.events if e[1] == "uninstall"] == []
    assert "rke2.servers.node-2" in servers.state.resources


def test_a_hand_installed_server_with_another_config_is_refused_before_anything_changes(
    spec, world
):
    node = world.nodes["node-2"]
    _hand_installed(spec, node)
    node.files["/etc/rancher/rke2/config.yaml"] += "node-label: [by-hand=yes]\n"
    hand_config = node.files["/etc/rancher/rke2/config.yaml"]
    servers = _servers(spec)
    plan = _plan(servers)
    change = next(c for c in plan.changes if c.address == "rke2.servers.node-2")
    assert "refused: RKE2 installed by someone else" in (change.reason or "")
    with pytest.raises(
        InvalidError,
        match=r"node-2 runs RKE2 .* rke2ha did not install.*"
        r"rke2.install: none",
    ):
        servers.check_before_apply(plan)
    assert world.events == []
    assert node.files["/etc/rancher/rke2/config.yaml"] == hand_config
    assert world.nodes["node-1"].installs == 0


def test_a_hand_installed_server_matching_the_spec_is_adopted(spec, world):
    _hand_installed(spec, world.nodes["node-1"])
    up(spec)
    assert world.nodes["node-1"].installs == 0
    assert world.nodes["node-1"].active == "active"


def test_only_rke2s_own_token_refusals_count_as_one():
    fatal = 'level=fatal msg="starting kubernetes: preparing server: {}"'
    assert refused_for_token(fatal.format("token CA hash does not match the Cluster CA ..."))
    assert refused_for_token(
        fatal.format("bootstrap data already found and encrypted with different token")
    )
    assert refused_for_token(
        fatal.format(
            "failed to validate server configuration: "
            "https://198.18.0.11:9345/v1-rke2/config: 401 Unauthorized"
        )
    )
    # Other fatal lines that merely mention a token, or a 401 from elsewhere.
    assert not refused_for_token(fatal.format("failed to read token file /x: permission denied"))
    assert not refused_for_token(fatal.format("--token is required when joining a cluster"))
    assert not refused_for_token(fatal.format("https://registry.example/v2/: 401 Unauthorized"))


def test_a_fatal_line_merely_naming_a_token_is_not_reported_as_a_token_refusal(spec, world):
    world.nodes["node-1"].journal.append(
        'level=fatal msg="failed to write token file: no space left on device"'
    )
    world.nodes["node-1"].active = "failed"
    world.nodes["node-1"].version = None
    servers = _servers(spec)
    said = asyncio.run(servers._never_ready("node-1", "node Ready"))
    assert "its token is not the cluster's" not in str(said)
    assert "fix: read the journal on node-1" in str(said)


def test_a_skipped_ingress_config_is_a_note_of_the_plan(spec, world, tmp_path):
    data = spec.model_dump(mode="json", exclude_none=True)
    data["ingress"] = "traefik"
    data["load_balancer"].pop("address")
    other = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    plan = _plan(_servers(other))
    notes = [n for n in plan.notes if "RKE2 is installed without" in n]
    assert len(notes) == 1 and "load_balancer.address" in notes[0]
    assert not [n for n in _plan(_servers(spec)).notes if "installed without" in n]


def test_a_missing_version_is_an_error_naming_the_field(spec, tmp_path):
    data = spec.model_dump(mode="json", exclude_none=True)
    data["rke2"].pop("version")
    other = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    with pytest.raises(InvalidError, match=r"^rke2.version: .*fix: set rke2.version"):
        _servers(other)


def test_uninstall_names_the_merged_context_and_leaves_the_users_file(
    spec, world, tmp_path, monkeypatch
):
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.existing.provider import ExistingProvider

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home" / ".kube" / "config"
    up(spec, merge_kubeconfig=True)
    merged = home.read_text()
    uninstall = ExistingProvider(spec, ProviderOptions(uninstall_rke2=True))
    plan = uninstall.plan_destroy(uninstall.describe())
    notes = [n for n in plan.notes if "kubectl config delete-context prod" in n]
    assert len(notes) == 1 and notes[0].startswith(f"{home} keeps the context prod")
    servers = _servers(spec, uninstall=True)
    kube = next(c for c in plan.changes if c.address == "kubeconfig")
    servers.destroy(kube, SilentReporter())
    assert home.read_text() == merged
    # Without the context there, no such note.
    monkeypatch.setenv("HOME", str(tmp_path / "other"))
    uninstall = ExistingProvider(spec, ProviderOptions(uninstall_rke2=True))
    assert not [n for n in uninstall.plan_destroy(uninstall.describe()).notes if "keeps" in n]


def test_uninstall_checks_every_node_before_the_first_uninstall(spec, world, tmp_path):
    """The first server goes last; its address moved, so not even the joiners go first."""
    up(spec)
    data = spec.model_dump(mode="json", exclude_none=True)
    data["nodes"][0]["address"] = "198.18.0.99"
    moved = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    servers = _servers(moved, uninstall=True)
    from rke2ha.plan import destroy_plan
    from rke2ha.providers.existing.provider import KIND_RANK

    plan = destroy_plan(servers.destroy_observed(), kind_rank=KIND_RANK)
    with pytest.raises(InvalidError, match=r"node node-1: rke2ha installed RKE2 on 198.18.0.11"):
        servers.check_before_destroy(plan)
    assert [e for e in world.events if e[1] == "uninstall"] == []


def test_plain_down_logs_in_to_no_node_and_removes_the_lb_and_record(spec, world, monkeypatch):
    from rke2ha.providers import lifecycle
    from rke2ha.providers.base import ProviderOptions
    from rke2ha.providers.existing import dnsrecord
    from rke2ha.providers.existing.provider import ENGINE, ENGINE_KIND
    from rke2ha.state import ResourceEntry

    up(spec)
    store = StateStore(spec.state_dir, spec.name)
    state = store.load_or_new("existing")
    record = dnsrecord.HostnameRecord(spec)
    state.resources[dnsrecord.ADDRESS] = ResourceEntry(
        dnsrecord.KIND,
        dnsrecord.record_name(spec),
        "created",
        {"provider": record.provider, "properties": record.desired_properties()},
    )
    # An engine whose process is gone: `down` still removes what it left.
    state.resources[ENGINE] = ResourceEntry(
        ENGINE_KIND, "haproxy", "created", {"engine": "haproxy"}
    )
    store.save(state)
    tried: list[str] = []

    async def unreachable(target: Any, accept_new_host_keys: bool = False) -> Any:
        tried.append(target.node)
        raise InvalidError(f"{target.node}: ssh: connection refused")

    monkeypatch.setattr(connection, "connect", unreachable)
    result = lifecycle.down(spec, ProviderOptions(), lambda plan: True, SilentReporter())
    assert result.outcome is not None
    assert sorted(c.address for c in result.outcome.done) == [dnsrecord.ADDRESS, ENGINE]
    assert tried == []
    left = StateStore(spec.state_dir, spec.name).load_or_new("existing").resources
    assert sorted(left) == sorted([*(f"rke2.servers.{n}" for n in NAMES), "kubeconfig"])
    # The same unreachable nodes still stop `plan`: it must read what is there.
    from rke2ha.providers.existing.provider import ExistingProvider

    with pytest.raises(InvalidError, match="connection refused"):
        ExistingProvider(spec, ProviderOptions()).describe()


def test_plan_writes_no_secret_and_up_keeps_the_token_it_planned(spec, world, tmp_path):
    from rke2ha.providers import lifecycle
    from rke2ha.providers.base import ProviderOptions

    data = spec.model_dump(mode="json", exclude_none=True)
    data["rancher"]["install"] = True
    with_rancher = spec_from_source(YamlSource(data=data, filename="spec.yaml"), tmp_path)
    secrets = with_rancher.state_dir / "secrets"
    result = lifecycle.plan(with_rancher, ProviderOptions())
    assert not secrets.exists()
    assert not with_rancher.rke2_token_file.exists()
    assert not with_rancher.bootstrap_password_file.exists()
    assert any("does not exist yet" in note for note in result.plan.notes)
    # up writes the very token the planned configs carry, before any node changes.
    servers = _servers(spec)
    plan = _plan(servers)
    assert not spec.rke2_token_file.exists()
    planned = servers.files("node-1").config
    servers.check_before_apply(plan)
    token = spec.rke2_token_file.read_text().strip()
    assert stat.S_IMODE(spec.rke2_token_file.stat().st_mode) == 0o600
    assert token in planned
    assert world.events == []
