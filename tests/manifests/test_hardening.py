"""Every kbl pod is hardened, sized, probed and disruption-safe."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.manifests.shipped import MANIFESTS, NAMESPACE, find, load_docs, of_kind, plain_objects, pod_spec

Obj = dict[str, Any]
OBJECTS = plain_objects()
DEPLOYMENTS = of_kind(OBJECTS, "Deployment")
NAMES = [d["metadata"]["name"] for d in DEPLOYMENTS]


def test_the_three_components_are_shipped() -> None:
    assert sorted(NAMES) == ["kbl-controller", "kbl-extender", "kbl-scheduler"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=NAMES)
def test_pods_run_non_root_with_runtime_default_seccomp_and_no_host_access(deployment: Obj) -> None:
    spec = pod_spec(deployment)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=NAMES)
def test_containers_drop_all_capabilities_and_write_nothing_but_tmp(deployment: Obj) -> None:
    spec = pod_spec(deployment)
    for container in spec.get("initContainers", []) + spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["runAsNonRoot"] is True
        assert ctx.get("privileged", False) is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        writable = [m for m in container.get("volumeMounts", []) if not m.get("readOnly")]
        assert [m["mountPath"] for m in writable] == ["/tmp"], container["name"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=NAMES)
def test_containers_have_requests_and_limits_and_pinned_images(deployment: Obj) -> None:
    for container in pod_spec(deployment)["containers"]:
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, f"{container['name']} {kind}"
        image = container["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", image


def test_scheduler_runs_the_stock_kube_scheduler_image_at_a_pinned_patch_version() -> None:
    (container,) = pod_spec(find(OBJECTS, "Deployment", "kbl-scheduler"))["containers"]
    repo, _, tag = container["image"].rpartition(":")
    assert repo == "registry.k8s.io/kube-scheduler"
    assert re.fullmatch(r"v1\.\d+\.\d+", tag), tag


def _probe(container: Obj, kind: str) -> Obj:
    probe: Obj = container[kind]["httpGet"]
    return probe


def test_extender_is_ready_only_after_cache_sync_and_live_on_healthz_over_https() -> None:
    (container,) = pod_spec(find(OBJECTS, "Deployment", "kbl-extender"))["containers"]
    ready, live = _probe(container, "readinessProbe"), _probe(container, "livenessProbe")
    assert ready["path"].endswith("/readyz")
    assert live["path"].endswith("/healthz")
    assert ready["scheme"] == live["scheme"] == "HTTPS"
    port_names = {p["name"] for p in container["ports"]}
    assert ready["port"] in port_names and live["port"] in port_names


def test_scheduler_is_probed_on_its_secure_port() -> None:
    (container,) = pod_spec(find(OBJECTS, "Deployment", "kbl-scheduler"))["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == 10259
    assert _probe(container, "livenessProbe")["scheme"] == "HTTPS"
    assert _probe(container, "readinessProbe")["path"] == "/readyz"


@pytest.mark.parametrize(("name", "replicas"), [("kbl-extender", 2), ("kbl-scheduler", 2)])
def test_replicated_components_have_a_pdb_that_still_lets_a_node_drain(name: str, replicas: int) -> None:
    deployment = find(OBJECTS, "Deployment", name)
    assert deployment["spec"]["replicas"] >= replicas
    pdb = find(OBJECTS, "PodDisruptionBudget", name)
    selector = pdb["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert 1 <= pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_extender_rolls_without_losing_capacity_and_spreads_over_zones() -> None:
    deployment = find(OBJECTS, "Deployment", "kbl-extender")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    keys = {c["topologyKey"] for c in pod_spec(deployment)["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_extender_serves_tls_from_the_secret_and_the_scheduler_sees_only_the_ca() -> None:
    extender = pod_spec(find(OBJECTS, "Deployment", "kbl-extender"))
    scheduler = pod_spec(find(OBJECTS, "Deployment", "kbl-scheduler"))
    ext_secret = next(v["secret"] for v in extender["volumes"] if "secret" in v)
    sched_secret = next(v["secret"] for v in scheduler["volumes"] if "secret" in v)
    assert ext_secret["secretName"] == sched_secret["secretName"] == "kbl-extender-tls"
    assert {i["key"] for i in ext_secret["items"]} == {"tls.crt", "tls.key"}
    assert [i["key"] for i in sched_secret["items"]] == ["ca.crt"]


def test_controller_service_account_carries_the_irsa_role() -> None:
    account = find(OBJECTS, "ServiceAccount", "kbl-controller")
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn)
    for name in ("kbl-extender", "kbl-scheduler"):
        assert "annotations" not in find(OBJECTS, "ServiceAccount", name)["metadata"], "only the controller talks to AWS"


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (namespace,) = load_docs(MANIFESTS / "namespace.yaml")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_scheduler_and_controller_elect_leaders_on_their_own_leases() -> None:
    """kube-scheduler elects a leader on its own Lease, and so do `kbl controller`'s replicas:
    two of them, rolled with a standby up before the old one stops, one kept through drains."""
    role = find(OBJECTS, "Role", "kbl-scheduler-leader-election")
    assert any("kbl-scheduler" in r.get("resourceNames", []) for r in role["rules"])
    controller = find(OBJECTS, "Deployment", "kbl-controller")
    assert controller["spec"]["replicas"] == 2
    assert controller["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    (container,) = pod_spec(controller)["containers"]
    args = container["args"]
    assert "--leader-elect" in args
    lease = args[args.index("--leader-elect-lease") + 1]
    assert args[args.index("--leader-elect-namespace") + 1] == controller["metadata"]["namespace"]
    role = find(OBJECTS, "Role", "kbl-controller-leader-election")
    assert any(lease in r.get("resourceNames", []) and "update" in r["verbs"] for r in role["rules"])
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    pdb = find(OBJECTS, "PodDisruptionBudget", "kbl-controller")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= controller["spec"]["template"]["metadata"]["labels"].items()


def test_shipped_controller_arguments_are_accepted_by_kbl_controller_itself() -> None:
    from kbl import cli

    if "controller" not in {name for name, _, _ in cli.COMMANDS}:
        pytest.skip("`kbl controller` is not registered on this branch yet (issue 6's CLI)")
    (container,) = pod_spec(find(OBJECTS, "Deployment", "kbl-controller"))["containers"]
    assert container["command"] == ["kbl"]
    parsed = cli.build_parser().parse_args(container["args"])
    assert parsed.command == "controller"


def test_image_runs_as_the_user_the_pods_demand_and_ships_every_package() -> None:
    dockerfile = (MANIFESTS / "image" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    for name in ("kbl-extender", "kbl-controller"):
        pod = pod_spec(find(OBJECTS, "Deployment", name))["securityContext"]
        assert users == [(str(pod["runAsUser"]), str(pod["runAsGroup"]))]
    pyproject = tomllib.loads((MANIFESTS.parent / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert 'ENTRYPOINT ["kbl"]' in dockerfile


def test_agent_service_account_carries_the_role_its_s3_sources_are_read_with() -> None:
    account = find(OBJECTS, "ServiceAccount", "kbl-agent")
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn)
