"""The rendered HAProxy on a machine whose open-files limit is 20000.

The default spec (max_connections 10000) needs 20044 descriptors with two threads (20033
without the runtime API's stats socket): main's
config made HAProxy 2.6 refuse to start there ("Cannot raise FD limit"); the rendered one
(`no strict-limits`) passes `haproxy -c` and starts, warning with the exact need that
`rke2ha.render.haproxy_fds` computes. The largest max_connections the computation allows
starts without that warning, one more draws it. `up`'s check (`ensure_haproxy_fits`)
draws the same line, with the fix.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.ingress.harness import ADMIN, spec_overrides
from tests.render.helpers import SpecFactory, render
from tests.support.procs import stop

from rke2ha.providers.existing.fdlimit import haproxy_threads
from rke2ha.render.haproxy_fds import fd_need

LIMIT = 20000
PRLIMIT = ["prlimit", f"--nofile={LIMIT}:{LIMIT}"]


@pytest.fixture(autouse=True)
def tools() -> None:
    for tool in ("haproxy", "prlimit"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/system-deps.sh installs it)")


def rendered(tmp_path: Path, max_connections: int) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    specs = SpecFactory(tmp_path)
    spec = specs.load(spec_overrides(max_connections=max_connections, ports=[80, 443, 6443, 9345]))
    out = tmp_path / "out"
    render(spec, out, bind_host="127.0.133.10")
    return out / "haproxy/haproxy.cfg"


def fitting_max_connections(tmp_path: Path) -> int:
    need = fd_need(rendered(tmp_path / "probe", 10_000).read_text())
    return need.max_connections_within(LIMIT, haproxy_threads())


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PRLIMIT, "haproxy", "-db", "-f", str(cfg)], stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def starts_and_serves(cfg: Path, log: Path) -> str:
    """`haproxy -c`, then a real start under the limit until its stats page answers; its log."""
    check = subprocess.run([*PRLIMIT, "haproxy", "-c", "-f", str(cfg)], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = start(cfg, log)
    try:
        deadline = time.monotonic() + 10
        answered = False
        while time.monotonic() < deadline and not answered:
            assert proc.poll() is None, f"haproxy exited: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://{ADMIN}/;csv", timeout=1) as response:
                    answered = response.status == 200
            except OSError:
                time.sleep(0.1)
        assert answered, log.read_text()
    finally:
        stop(proc)
    return log.read_text()


def test_default_spec_starts_under_20000_and_says_what_it_needs(tmp_path: Path) -> None:
    cfg = rendered(tmp_path, 10_000)
    need = fd_need(cfg.read_text()).total(haproxy_threads())
    assert need > LIMIT
    assert f"Open files: {fd_need(cfg.read_text()).total(1)} with one thread" in cfg.read_text()
    log = starts_and_serves(cfg, tmp_path / "default.log")
    assert f"Cannot raise FD limit to {need}, limit is {LIMIT}" in log


def test_the_computed_fit_draws_no_warning_and_one_more_connection_does(
    tmp_path: Path,
) -> None:
    fits = fitting_max_connections(tmp_path)
    assert 9_900 < fits < 10_000  # ~2 descriptors per connection under 20000
    log = starts_and_serves(rendered(tmp_path / "fits", fits), tmp_path / "fits.log")
    assert "Cannot raise FD limit" not in log
    over = rendered(tmp_path / "over", fits + 1)
    need = fd_need(over.read_text()).total(haproxy_threads())
    assert need == LIMIT + 1 or need == LIMIT + 2  # one connection: two descriptors
    log = starts_and_serves(over, tmp_path / "over.log")
    assert f"Cannot raise FD limit to {need}, limit is {LIMIT}" in log


def test_up_check_names_the_fix_where_haproxy_would_not_start(tmp_path: Path) -> None:
    fits = fitting_max_connections(tmp_path)
    for max_connections, ok in ((fits, True), (fits + 1, False)):
        cfg = rendered(tmp_path / str(max_connections), max_connections)
        code = (
            "import sys; from pathlib import Path; "
            "from rke2ha.providers.existing.fdlimit import ensure_haproxy_fits; "
            "ensure_haproxy_fits(Path(sys.argv[1]).read_text())"
        )
        child = subprocess.run(
            [*PRLIMIT, sys.executable, "-c", code, str(cfg)], capture_output=True, text=True
        )
        assert (child.returncode == 0) == ok, child.stderr
        if not ok:
            assert f"set load_balancer.max_connections to {fits} or less" in child.stderr
            assert "LimitNOFILE" in child.stderr
