"""Certificate files: clear errors before anything listens, and the context's protocol floor."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from helpers import HOSTNAME, LB_HOST, CertFiles, free_port, lb_command, make_cert, start_lb

from rke2ha.errors import UsageError
from rke2ha.lb.l7.tls import load_certificate
from rke2ha.tlsfiles import TlsFileError


def test_good_pair_builds_a_tls12_plus_context(cert: CertFiles) -> None:
    loaded = load_certificate(cert.cert, cert.key, HOSTNAME)
    assert loaded.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert loaded.context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert HOSTNAME in loaded.names


def test_key_of_another_certificate(tmp_path: Path, cert: CertFiles) -> None:
    other = make_cert(tmp_path / "other", [HOSTNAME], tag="b")
    with pytest.raises(TlsFileError, match="does not belong to the certificate"):
        load_certificate(cert.cert, other.key, HOSTNAME)


def test_certificate_not_covering_the_hostname(tmp_path: Path) -> None:
    other = make_cert(tmp_path / "other", ["something.else.test"], tag="c")
    with pytest.raises(TlsFileError, match=f"does not cover {HOSTNAME}.*something.else.test"):
        load_certificate(other.cert, other.key, HOSTNAME)


def test_not_pem_and_missing(tmp_path: Path, cert: CertFiles) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(TlsFileError, match="not a PEM certificate"):
        load_certificate(junk, cert.key, HOSTNAME)
    with pytest.raises(TlsFileError, match="not a PEM private key"):
        load_certificate(cert.cert, junk, HOSTNAME)
    with pytest.raises(UsageError, match="not found"):
        load_certificate(tmp_path / "nope.crt", cert.key, HOSTNAME)


def test_cli_reports_bad_certificate_without_traceback(tmp_path: Path) -> None:
    wrong = make_cert(tmp_path / "w", ["nothere.test"], tag="w")
    proc = subprocess.run(
        lb_command(
            "--layer",
            "7",
            "--listen",
            f"{LB_HOST}:{free_port()}",
            "--cert",
            str(wrong.cert),
            "--key",
            str(wrong.key),
            "--hostname",
            HOSTNAME,
            "--backend",
            "127.0.50.11:1",
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "does not cover rancher.l7.test" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        lb_command("--layer", "7", "--listen", f"{LB_HOST}:1", "--hostname", HOSTNAME),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--cert" in proc.stderr and "Traceback" not in proc.stderr


def test_lb_serve_help_lists_the_layer7_flags() -> None:
    proc = subprocess.run(
        lb_command("--help"), capture_output=True, text=True, timeout=30, check=True
    )
    for flag in ("--layer", "--cert", "--key", "--hostname", "--redirect-from", "--affinity"):
        assert flag in proc.stdout


def test_a_key_loosened_while_serving_is_warned_about_once_per_load(tmp_path: Path) -> None:
    # At start a loose key is refused (as in a spec); one loosened later is served on, with
    # a warning at each reload the operator asks for, never once per check.
    loose = make_cert(tmp_path / "loose", [HOSTNAME], tag="m")
    lb = start_lb(tmp_path, loose, ["127.0.50.11:1"])
    try:
        os.chmod(loose.key, 0o644)
        for reloads in (1, 2):
            lb.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while lb.stderr().count("certificate reloaded") < reloads:
                assert time.monotonic() < deadline, lb.stderr()
                time.sleep(0.05)
            assert lb.stderr().count("readable by others") == reloads
    finally:
        lb.stop()
