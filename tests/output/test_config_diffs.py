"""`plan`'s config file diffs (provider existing), from a running version folder on disk:
only real changes, never a secret's content."""

from __future__ import annotations

import os
from pathlib import Path

from rke2ha.providers.existing.configs import _PLACEHOLDER, EngineConfig, config_diffs
from rke2ha.render.bundle import RenderedFile, Rendering

KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"


def running_version(root: Path, files: dict[str, tuple[str, int]]) -> Path:
    """A version folder as `up` writes it, behind a `current` link; its config file."""
    version = root / "v-0123456789abcdef"
    for path, (text, mode) in files.items():
        target = version / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("{dir}", str(version)))
        os.chmod(target, mode)
    (root / "current").symlink_to(version.name)
    return root / "current" / "haproxy" / "haproxy.cfg"


def test_only_real_changes_and_no_secret_content(tmp_path: Path) -> None:
    config_file = running_version(
        tmp_path,
        {
            "haproxy/haproxy.cfg": ("crt {dir}/haproxy/tls.pem\ninter 2s\n", 0o644),
            "haproxy/tls.pem": (KEY, 0o600),
            "haproxy/old.key": (KEY, 0o600),  # gone from the new version
        },
    )
    new = EngineConfig(
        "haproxy",
        "f" * 64,
        Rendering(
            {
                "haproxy/haproxy.cfg": RenderedFile(
                    f"crt {_PLACEHOLDER}/haproxy/tls.pem\ninter 3s\n"
                ),
                "haproxy/tls.pem": RenderedFile(KEY, secret=True),  # unchanged
            }
        ),
    )
    diffs = config_diffs(config_file, "haproxy", new)
    assert sorted(diffs) == ["haproxy/haproxy.cfg", "haproxy/old.key"]
    cfg = diffs["haproxy/haproxy.cfg"].splitlines()
    assert "-inter 2s" in cfg and "+inter 3s" in cfg
    assert not [line for line in cfg if line.startswith(("-crt", "+crt"))]  # same after all
    assert diffs["haproxy/old.key"] == "(holds a secret: changed, not shown)\n"
    assert all("c2VjcmV0" not in text for text in diffs.values())


def test_nothing_readable_gives_no_diffs(tmp_path: Path) -> None:
    new = EngineConfig("haproxy", "f" * 64, Rendering({}))
    assert config_diffs(tmp_path / "gone" / "haproxy" / "haproxy.cfg", "haproxy", new) == {}
