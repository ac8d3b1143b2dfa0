"""`rancher/values.yaml` and `rancher/install.sh`: Rancher (and cert-manager) with Helm.

The values carry what the spec decides (hostname, replicas, TLS mode: `external` at layer 7,
where the load balancer terminates TLS). The bootstrap password is never written into
either file: install.sh reads it from the password file when it runs, and hands it to Helm
in a private temporary values file, so it appears neither on a command line (`ps`) nor in
the rendered output.

cert-manager is installed only when Rancher needs it to issue certificates: `tls_source`
`rancher` (Rancher's own CA) or `letsEncrypt`.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from rke2ha.render.common import commented, header_lines
from rke2ha.spec import Spec

RANCHER_REPO = ("rancher-stable", "https://releases.rancher.com/server-charts/stable")
JETSTACK_REPO = ("jetstack", "https://charts.jetstack.io")
NEEDS_CERT_MANAGER = ("rancher", "letsEncrypt")
HELM_TIMEOUT = "10m"


def needs_cert_manager(spec: Spec) -> bool:
    return spec.rancher.tls_source in NEEDS_CERT_MANAGER


def values(spec: Spec) -> dict[str, Any]:
    """Rancher chart values as data (no secrets)."""
    document: dict[str, Any] = {
        "hostname": spec.hostname,
        "replicas": spec.rancher.replicas,
        "ingress": {"ingressClassName": spec.ingress},
    }
    if spec.rancher_tls_external:
        # The load balancer terminates TLS and talks plain HTTP to the ingress.
        document["tls"] = "external"
    else:
        document["ingress"]["tls"] = {"source": spec.rancher.tls_source}
    if spec.rancher.tls_source == "letsEncrypt":
        lets_encrypt: dict[str, Any] = {"ingress": {"class": spec.ingress}}
        if spec.rancher.letsencrypt_email:
            lets_encrypt["email"] = spec.rancher.letsencrypt_email
        document["letsEncrypt"] = lets_encrypt
    return document


def render_values(spec: Spec, spec_label: str) -> str:
    notes = [
        *header_lines(spec_label, f"Helm values for Rancher at https://{spec.hostname}"),
        "The bootstrap password is not here: install.sh reads it from its file at run time.",
    ]
    if spec.rancher.tls_source == "secret":
        notes.append(
            "tls source `secret`: create the tls-rancher-ingress secret in cattle-system first."
        )
    body = yaml.safe_dump(values(spec), sort_keys=False, default_flow_style=False)
    return "\n".join(commented(notes)) + "\n" + body


def _version_flag(version: str | None) -> str:
    return f" --version {shlex.quote(version)}" if version else ""


def render_install(spec: Spec, spec_label: str) -> str:
    """install.sh: helm repos, cert-manager when needed, Rancher; `bash -n` clean."""
    password_file = shlex.quote(str(spec.bootstrap_password_file))
    what = "cert-manager and Rancher" if needs_cert_manager(spec) else "Rancher"
    notes = commented(
        [
            *header_lines(spec_label, f"install {what} for {spec.hostname}"),
            "Run with kubectl and helm pointed at the new RKE2 cluster (KUBECONFIG).",
            "BOOTSTRAP_PASSWORD_FILE overrides where the bootstrap password is read from.",
        ]
    )
    lines = [
        "#!/usr/bin/env bash",
        *notes,
        "set -euo pipefail",
        "",
        'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f"default_password_file={password_file}",
        'password_file="${BOOTSTRAP_PASSWORD_FILE:-$default_password_file}"',
        "for tool in helm kubectl; do",
        '  command -v "$tool" >/dev/null || { echo "install.sh: $tool not found" >&2; exit 1; }',
        "done",
        'if [ ! -r "$password_file" ]; then',
        '  echo "install.sh: cannot read the bootstrap password file $password_file;" \\',
        '    "set BOOTSTRAP_PASSWORD_FILE or run rke2ha render again" >&2',
        "  exit 1",
        "fi",
        "",
        f"helm repo add {RANCHER_REPO[0]} {RANCHER_REPO[1]} --force-update",
    ]
    if needs_cert_manager(spec):
        lines.append(f"helm repo add {JETSTACK_REPO[0]} {JETSTACK_REPO[1]} --force-update")
    lines += ["helm repo update", ""]
    if needs_cert_manager(spec):
        version = _version_flag(spec.rancher.cert_manager_version)
        lines += [
            f"# cert-manager issues the ingress certificate (tls source {spec.rancher.tls_source})",
            f"helm upgrade --install cert-manager {JETSTACK_REPO[0]}/cert-manager \\",
            f"  --namespace cert-manager --create-namespace{version} \\",
            f"  --set crds.enabled=true --wait --timeout {HELM_TIMEOUT}",
            "",
        ]
    if spec.rancher.tls_source == "secret":
        lines += [
            "kubectl -n cattle-system get secret tls-rancher-ingress >/dev/null || {",
            '  echo "install.sh: create the tls-rancher-ingress secret in cattle-system first" >&2',
            "  exit 1",
            "}",
            "",
        ]
    lines += [
        "# The password goes to Helm in a private temporary values file, never on a command",
        "# line (visible in ps) and never in the rendered files.",
        'secret_values="$(mktemp)"',
        "trap 'rm -f \"$secret_values\"' EXIT",
        'chmod 600 "$secret_values"',
        'password="$(tr -d \'\\r\\n\' < "$password_file")"',
        'quote="\'"',
        'printf "bootstrapPassword: \'%s\'\\n" "${password//$quote/$quote$quote}"'
        ' > "$secret_values"',
        "",
        f"helm upgrade --install rancher {RANCHER_REPO[0]}/rancher \\",
        f"  --namespace cattle-system --create-namespace{_version_flag(spec.rancher.version)} \\",
        '  --values "$here/values.yaml" --values "$secret_values" \\',
        f"  --wait --timeout {HELM_TIMEOUT}",
        f"kubectl -n cattle-system rollout status deploy/rancher --timeout={HELM_TIMEOUT}",
        f'echo "Rancher is up: https://{spec.hostname} (bootstrap password in $password_file)"',
    ]
    return "\n".join(lines) + "\n"


def rancher_files(spec: Spec, spec_label: str) -> dict[str, str]:
    return {
        "rancher/values.yaml": render_values(spec, spec_label),
        "rancher/install.sh": render_install(spec, spec_label),
    }
