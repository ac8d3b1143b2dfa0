"""The root filesystem's pure parts: which apt mirror it reads, when its cache key changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.machines import rootfs
from tests.support.machines.network import NetworkError, machine_address
from tests.support.machines.sweep import PREFIX_RE, new_prefix

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.one/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.one/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_stanza_serving_bookworm_main() -> None:
    assert rootfs.parse_debian_mirror(DEB822) == "http://mirror.one/debian"


def test_security_only_or_disabled_or_source_stanzas_are_not_mirrors() -> None:
    security = DEB822.split("\n\n")[1]
    assert rootfs.parse_debian_mirror(security) is None
    disabled = DEB822.replace("Types: deb\n#", "Enabled: no\nTypes: deb\n#", 1)
    assert rootfs.parse_debian_mirror(disabled) is None
    assert rootfs.parse_debian_mirror(DEB822.replace("Types: deb\n#", "Types: deb-src\n#")) is None


def test_one_line_format() -> None:
    text = (
        "# deb http://commented.out/debian bookworm main\n"
        "deb-src http://src.only/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.two/debian bookworm main contrib\n"
    )
    assert rootfs.parse_debian_mirror(text) == "http://mirror.two/debian"
    assert rootfs.parse_debian_mirror("deb http://x/debian bullseye main\n") is None


def test_environment_overrides_the_apt_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKE2HA_TEST_MIRROR", "http://override/debian")
    assert rootfs.debian_mirror() == "http://override/debian"


def test_cache_key_follows_the_package_list_not_its_order() -> None:
    base = rootfs.cache_key(rootfs.PACKAGES)
    assert rootfs.cache_key(tuple(reversed(rootfs.PACKAGES))) == base
    assert rootfs.cache_key((*rootfs.PACKAGES, "curl")) != base


def test_cache_lives_outside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RKE2HA_TEST_CACHE", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert not rootfs.cache_dir().resolve().is_relative_to(repo)


def test_machine_addresses_stay_in_the_benchmarking_range() -> None:
    assert machine_address(0) == "198.18.0.11"
    assert machine_address(300) == "198.18.1.55"
    with pytest.raises(NetworkError):
        machine_address(65530)


def test_session_prefixes_are_recognised_by_the_sweep() -> None:
    prefix = new_prefix()
    match = PREFIX_RE.match(f"{prefix}-node-1")
    assert match is not None and match.group(1) == prefix
    assert PREFIX_RE.match("r2tzzzzzz-node-1") is None
