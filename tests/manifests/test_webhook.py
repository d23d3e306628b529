"""The optional mutating webhook in the chart: valid, harmless when it fails, only for kbl pods."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from extender.admission import MUTATE_PATH
from tests.manifests.shipped import MANIFESTS, find, generator, load_docs

Obj = dict[str, Any]
GEN = generator()


def _render(values: Obj, *, release: str = "kbl", namespace: str = "kbl-system") -> list[Obj]:
    rendered = GEN.render(values, release=release, namespace=namespace)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def webhook_config() -> Obj:
    (doc,) = load_docs(MANIFESTS / "webhook.yaml")
    return doc


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
def test_webhook_configuration_validates_against_the_kubernetes_schema(version: str) -> None:
    kubernetes_validate.validate(webhook_config(), version, strict=True)


def test_webhook_never_blocks_a_pod_and_only_kbl_pods_pay() -> None:
    (hook,) = webhook_config()["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert 1 <= hook["timeoutSeconds"] <= 5
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["objectSelector"]["matchExpressions"] == [{"key": "kbl.io/kbl", "operator": "Exists"}]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn"
    assert {"kube-system", "kbl-system"} <= set(excluded["values"])


def test_webhook_calls_the_extender_service_at_mutate_with_the_cert_manager_ca() -> None:
    config = webhook_config()
    (hook,) = config["webhooks"]
    service = hook["clientConfig"]["service"]
    assert service["path"] == MUTATE_PATH
    extender = find(load_docs(MANIFESTS / "extender.yaml"), "Service", service["name"])
    assert service["namespace"] == extender["metadata"]["namespace"]
    assert service["port"] in {p["port"] for p in extender["spec"]["ports"]}
    namespace, certificate = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    assert find(load_docs(MANIFESTS / "cert-manager.yaml"), "Certificate", certificate)["metadata"]["namespace"] == namespace


def test_webhook_is_off_by_default_and_takes_a_ca_bundle_without_cert_manager() -> None:
    assert not [d for d in _render({}) if d["kind"] == "MutatingWebhookConfiguration"]
    objects = _render({"webhook": {"enabled": True, "caBundle": "Y2E="}})
    hook = find(objects, "MutatingWebhookConfiguration", "kbl-extender-narrowing")
    assert hook["webhooks"][0]["clientConfig"]["caBundle"] == "Y2E="
    assert "annotations" not in hook["metadata"]
