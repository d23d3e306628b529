"""The chart's narrowing switch (``webhook.narrowing``) reaches the extender and grants only what
its gate controller needs (pods patch/delete, its Lease in the release namespace)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from extender.narrowing import EXTENDER_RESOURCE
from kbl import cli
from kbl.commands.serve import settings_from_args
from tests.manifests.shipped import find, generator

Obj = dict[str, Any]
GEN = generator()


def _render(values: Obj) -> list[Obj]:
    rendered = GEN.render(values, release="kbl", namespace="kbl-system")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def _container(objects: list[Obj]) -> Obj:
    container: Obj = find(objects, "Deployment", "kbl-extender")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_narrowing_on_passes_the_flag_its_settings_and_the_rbac_of_the_gate_controller(monkeypatch: Any) -> None:
    objects = _render({"webhook": {"enabled": True, "caBundle": "Y2E=", "narrowing": {"enabled": True, "candidates": 8}}})
    container = _container(objects)
    assert "--narrowing" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    rules = find(objects, "ClusterRole", "kbl-extender")["rules"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch", "delete"]} in rules
    role = find(objects, "Role", "kbl-extender-narrowing")
    assert role["metadata"]["namespace"] == "kbl-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    assert find(objects, "RoleBinding", "kbl-extender-narrowing")["subjects"][0]["name"] == "kbl-extender"
    # the args and env the chart renders are what `kbl serve` reads
    for name in ("KBL_NARROW_CANDIDATES", "KBL_NARROW_RELEASE_TIMEOUT_S"):
        monkeypatch.setenv(name, env[name]["value"])
    args = cli.build_parser().parse_args(container["args"])
    settings = settings_from_args(args)
    assert settings.narrowing
    assert settings.narrow_candidates == 8
    assert settings.narrow_release_timeout_s == 30.0


def test_narrowing_off_grants_no_write_on_pods_and_no_lease() -> None:
    for values in ({}, {"webhook": {"enabled": True, "caBundle": "Y2E="}}):
        objects = _render(values)
        assert "--narrowing" not in _container(objects)["args"]
        rules = find(objects, "ClusterRole", "kbl-extender")["rules"]
        assert not any("patch" in r["verbs"] or "delete" in r["verbs"] for r in rules)
        assert not [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "kbl-extender-narrowing"]


def _extender_stanza(objects: list[Obj]) -> Obj:
    config = yaml.safe_load(find(objects, "ConfigMap", "kbl-scheduler-config")["data"]["config.yaml"])
    stanza: Obj = config["extenders"][0]
    return stanza


def test_the_scheduler_sends_only_pods_asking_for_the_extender_resource_to_kbl_only_with_narrowing() -> None:
    on = _render({"webhook": {"enabled": True, "caBundle": "Y2E=", "narrowing": {"enabled": True}}})
    # the name the webhook gives every pod it does not gate; NodeResourcesFit must ignore it
    assert _extender_stanza(on)["managedResources"] == [{"name": EXTENDER_RESOURCE, "ignoredByScheduler": True}]
    for values in ({}, {"webhook": {"enabled": True, "caBundle": "Y2E="}}, {"webhook": {"narrowing": {"enabled": True}}}):
        assert "managedResources" not in _extender_stanza(_render(values))  # every kbl pod reaches the extender
    own = {"name": "example.com/data", "ignoredByScheduler": True}
    both = _render(
        {
            "webhook": {"enabled": True, "caBundle": "Y2E=", "narrowing": {"enabled": True}},
            "scheduler": {"extender": {"managedResources": [own]}},
        }
    )
    assert _extender_stanza(both)["managedResources"] == [own, {"name": EXTENDER_RESOURCE, "ignoredByScheduler": True}]


def test_with_narrowing_every_pod_of_kbls_profiles_passes_the_webhook_labelled_or_not() -> None:
    # pods skip the extender unless the webhook gives them kbl.io/extender, so the webhook may not
    # keep its kbl.io/kbl objectSelector (manifests/examples/dataset-reader.yaml has no such label)
    on = _render({"webhook": {"enabled": True, "caBundle": "Y2E=", "narrowing": {"enabled": True}}})
    config = find(on, "MutatingWebhookConfiguration", "kbl-extender-narrowing")
    for version in ("1.30.0", "1.33.0"):  # matchConditions: GA in 1.30, the chart's kubeVersion floor
        kubernetes_validate.validate(config, version, strict=True)
    (hook,) = config["webhooks"]
    assert "objectSelector" not in hook
    (condition,) = hook["matchConditions"]
    assert condition["expression"] == (
        "has(object.spec.schedulerName) && object.spec.schedulerName in ['kbl-scheduler', 'kbl-scheduler-exhaustive']".replace("'", '"')
    )
    off = _render({"webhook": {"enabled": True, "caBundle": "Y2E="}})
    (plain,) = find(off, "MutatingWebhookConfiguration", "kbl-extender-narrowing")["webhooks"]
    assert plain["objectSelector"]["matchExpressions"] == [{"key": "kbl.io/kbl", "operator": "Exists"}]
    assert "matchConditions" not in plain
