"""cert-manager and Rancher as RKE2 `HelmChart` manifests (helm.cattle.io/v1), so RKE2's
helm-controller installs them and no helm is needed on the workstation.

A file in `/var/lib/rancher/rke2/server/manifests/` is applied by RKE2 (auto-deploying
manifests); a HelmChart names the chart by `repo`/`chart`/`version`, or carries the chart
archive itself in `chartContent` (base64 of the .tgz) for air-gap, with `targetNamespace`,
`createNamespace` and `valuesContent` as the Helm release's namespace and values
(https://docs.k3s.io/helm, "HelmChart Field Definitions"; k3s-io/helm-controller
pkg/apis/helm.cattle.io/v1/types.go). cert-manager's chart installs its CRDs with
`crds.enabled=true` (cert-manager docs, Helm install). The Rancher values are those
`rke2ha render` writes (`rancher.values`) plus the bootstrap password, so the file that
holds the password is written mode 0600 and never printed.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from rke2ha.render.rancher import JETSTACK_REPO, RANCHER_REPO, needs_cert_manager, values
from rke2ha.spec import Spec

API_VERSION = "helm.cattle.io/v1"
CERT_MANAGER_FILE = "rke2ha-cert-manager.yaml"
RANCHER_FILE = "rke2ha-rancher.yaml"


def _chart(
    name: str,
    namespace: str,
    repo: str,
    version: str | None,
    content: bytes | None,
    chart_values: dict[str, Any],
) -> str:
    spec: dict[str, Any] = {"targetNamespace": namespace, "createNamespace": True}
    if content is not None:
        spec["chartContent"] = base64.b64encode(content).decode()
    else:
        spec.update(repo=repo, chart=name)
        if version:
            spec["version"] = version
    spec["valuesContent"] = yaml.safe_dump(chart_values, sort_keys=False)
    document = {
        "apiVersion": API_VERSION,
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": spec,
    }
    return yaml.safe_dump(document, sort_keys=False, width=1000)


def helmchart_manifests(
    spec: Spec,
    bootstrap_password: str,
    rancher_chart: bytes | None = None,
    cert_manager_chart: bytes | None = None,
) -> dict[str, str]:
    """{file name in the manifests folder: text}; the Rancher file holds the password."""
    files: dict[str, str] = {}
    if needs_cert_manager(spec):
        files[CERT_MANAGER_FILE] = _chart(
            "cert-manager",
            "cert-manager",
            JETSTACK_REPO[1],
            spec.rancher.cert_manager_version,
            cert_manager_chart,
            {"crds": {"enabled": True}},
        )
    rancher_values = {**values(spec), "bootstrapPassword": bootstrap_password}
    files[RANCHER_FILE] = _chart(
        "rancher",
        "cattle-system",
        RANCHER_REPO[1],
        spec.rancher.version,
        rancher_chart,
        rancher_values,
    )
    return files
