"""Every shipped manifest parses and validates against the Kubernetes API schemas.

``kubernetes-validate`` ships the OpenAPI schemas of every Kubernetes minor version offline;
strict mode also refuses unknown fields, as ``kubectl apply`` (server-side strict field
validation) does. We check the oldest version the chart supports (``kubeVersion`` in
Chart.yaml) and the version of the pinned kube-scheduler image.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.manifests.shipped import CHART, INSTALL_ORDER, MANIFESTS, OPTIONAL_FILES, example_objects, find, load_docs, plain_objects

Obj = dict[str, Any]


def _versions() -> list[str]:
    oldest = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].lstrip(">=").split("-")[0]
    tag = find(load_docs(MANIFESTS / "scheduler.yaml"), "Deployment", "kbl-scheduler")["spec"]["template"]["spec"]["containers"][0]["image"]
    pinned = tag.rsplit(":", 1)[1].lstrip("v")
    return sorted({oldest, pinned})


VERSIONS = _versions()
OBJECTS = plain_objects() + example_objects()


def _id(item: Any) -> str:
    if isinstance(item, dict):
        return f"{item['kind']}/{item['metadata']['name']}"
    return str(item)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("file", "obj"), [(f, o) for f, o in OBJECTS if o["apiVersion"] != "kbl.io/v1alpha1"], ids=_id)
def test_manifest_validates_against_kubernetes_schema(file: str, obj: Obj, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{file} {_id(obj)} against {version}: {where}: {exc.message}")


def test_schemas_are_checked_for_a_supported_and_the_pinned_version() -> None:
    assert VERSIONS[0] == "1.30.0"
    assert len(VERSIONS) == 2


def test_strict_validation_refuses_a_typo() -> None:
    """The check can fail: a misspelt field in a shipped Deployment is refused."""
    deployment = find(plain_objects(), "Deployment", "kbl-extender")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_every_plain_file_holds_objects_and_nothing_is_left_out() -> None:
    shipped = {p.relative_to(MANIFESTS).as_posix() for p in MANIFESTS.glob("*.yaml")} | {
        p.relative_to(MANIFESTS).as_posix() for p in (MANIFESTS / "crds").glob("*.yaml")
    }
    assert shipped == set(INSTALL_ORDER) | set(OPTIONAL_FILES)
    for rel in shipped:
        assert load_docs(MANIFESTS / rel), rel


def test_namespaced_objects_live_in_kbl_system_or_name_their_namespace() -> None:
    for file, obj in plain_objects():
        if obj["kind"] in {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver"}:
            assert "namespace" not in obj["metadata"], f"{file}: cluster-scoped {_id(obj)} has a namespace"
        elif obj["kind"] == "RoleBinding" and obj["metadata"]["namespace"] == "kube-system":
            assert obj["roleRef"]["name"] == "extension-apiserver-authentication-reader"
        else:
            assert obj["metadata"]["namespace"] == "kbl-system", f"{file}: {_id(obj)}"


def test_optional_cert_manager_objects_are_well_formed() -> None:
    """cert-manager kinds have no schema in kubernetes-validate; check the fields we rely on."""
    docs = load_docs(MANIFESTS / "cert-manager.yaml")
    assert {d["apiVersion"] for d in docs} == {"cert-manager.io/v1"}
    issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
    for cert in (d for d in docs if d["kind"] == "Certificate"):
        assert cert["spec"]["issuerRef"]["name"] in issuers
        assert cert["spec"]["issuerRef"]["kind"] == "Issuer"
        assert cert["spec"]["secretName"]
