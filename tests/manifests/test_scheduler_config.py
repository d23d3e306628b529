"""kbl-scheduler's KubeSchedulerConfiguration agrees with what the kbl extender serves.

The config is read from the shipped ConfigMap; the extender side is the real app
(:func:`extender.app.create_app` with :class:`extender.settings.ExtenderSettings` built from the
shipped ``kbl serve`` arguments), driven in-process over ASGI at the very URLs kube-scheduler
would call, with kube-scheduler's PascalCase bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from extender.app import create_app
from extender.messages import MAX_PRIORITY
from extender.settings import ExtenderSettings, normalize_prefix
from extender.state import ClusterState
from kbl import cli
from kbl.commands.serve import settings_from_args
from tests.manifests.shipped import NAMESPACE, find, generator, plain_objects, pod_spec, scheduler_config
from topology.snapshots import load_snapshot

Obj = dict[str, Any]
#: Fields of kube-scheduler's config/v1 Extender; kube-scheduler decodes strictly, so anything
#: else (a typo) stops it from starting.
EXTENDER_FIELDS = {
    "urlPrefix", "filterVerb", "preemptVerb", "prioritizeVerb", "weight", "bindVerb", "enableHTTPS",
    "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources", "ignorable",
}  # fmt: skip
TLS_FIELDS = {"insecure", "serverName", "certFile", "keyFile", "caFile", "certData", "keyData", "caData"}
#: kube-scheduler's MaxNodeScore: one extender point is worth weight x MaxNodeScore/MAX_PRIORITY.
MAX_NODE_SCORE = 100


def _objects(values: Obj | None = None) -> list[Obj]:
    """The shipped plain objects, or the chart rendered with ``values`` (for other settings)."""
    if values is None:
        return [o for _, o in plain_objects()]
    rendered = generator().render({"createNamespace": True, **values})
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def _config(objects: list[Obj]) -> Obj:
    cm = find(objects, "ConfigMap", "kbl-scheduler-config")
    config: Obj = yaml.safe_load(cm["data"]["config.yaml"])
    return config


def _serve_args(objects: list[Obj]) -> argparse.Namespace:
    """The shipped ``kbl serve`` arguments, parsed by the ``kbl`` command line itself."""
    (container,) = pod_spec(find(objects, "Deployment", "kbl-extender"))["containers"]
    assert container["command"] == ["kbl"]
    parsed = cli.build_parser().parse_args(container["args"])
    assert parsed.command == "serve"
    return parsed


def _settings(args: argparse.Namespace) -> ExtenderSettings:
    """The settings ``kbl serve`` builds from those arguments."""
    return settings_from_args(args)


def _go_duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_config_is_v1_with_its_own_profile_lease_and_every_node_scored() -> None:
    config = scheduler_config()
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["profiles"] == [{"schedulerName": "kbl-scheduler"}, {"schedulerName": "kbl-scheduler-exhaustive", "percentageOfNodesToScore": 100}]
    assert config["percentageOfNodesToScore"] == 100  # no webhook by default: every node for every kbl pod
    election = config["leaderElection"]
    assert election == {"leaderElect": True, "resourceLock": "leases", "resourceName": "kbl-scheduler", "resourceNamespace": NAMESPACE}


def test_extender_stanza_uses_only_known_fields_and_the_deliberate_choices() -> None:
    (ext,) = scheduler_config()["extenders"]
    assert set(ext) <= EXTENDER_FIELDS
    assert set(ext["tlsConfig"]) <= TLS_FIELDS
    assert ext["nodeCacheCapable"] is True
    assert ext["enableHTTPS"] is True
    assert "insecure" not in ext["tlsConfig"]
    assert ext["ignorable"] is False
    assert "bindVerb" not in ext, "binding is delegated only when scheduler.extender.bind is set"
    assert "managedResources" not in ext
    assert 0 < _go_duration_s(ext["httpTimeout"]) <= 5.0


def test_weight_lets_full_locality_beat_resource_balance_but_not_everything() -> None:
    """A full locality difference (10 points) must outweigh the ~200-point spread the resource
    and spread plugins produce; one point must not outweigh a much emptier node."""
    (ext,) = scheduler_config()["extenders"]
    weight = ext["weight"]
    assert isinstance(weight, int)
    per_point = weight * MAX_NODE_SCORE // MAX_PRIORITY
    assert per_point * MAX_PRIORITY > 2 * MAX_NODE_SCORE
    assert per_point < MAX_NODE_SCORE


def test_scheduler_reaches_the_extender_service_with_https_it_can_verify() -> None:
    objects = _objects()
    (ext,) = _config(objects)["extenders"]
    url = urlsplit(ext["urlPrefix"])
    service = find(objects, "Service", "kbl-extender")
    assert url.scheme == "https"
    assert url.hostname == f"kbl-extender.{NAMESPACE}.svc" == ext["tlsConfig"]["serverName"]
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"]
    (container,) = pod_spec(find(objects, "Deployment", "kbl-extender"))["containers"]
    (cport,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    args = _serve_args(objects)
    assert args.port == cport["containerPort"]
    assert args.tls_cert and args.tls_key
    scheduler = pod_spec(find(objects, "Deployment", "kbl-scheduler"))
    mounts = {m["name"]: m["mountPath"] for m in scheduler["containers"][0]["volumeMounts"]}
    (ca_volume,) = [v for v in scheduler["volumes"] if "secret" in v]
    assert ext["tlsConfig"]["caFile"] == f"{mounts[ca_volume['name']]}/{ca_volume['secret']['items'][0]['path']}"


def _pod() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"schedulerName": "kbl-scheduler", "containers": [{"name": "c", "image": "x"}]},
    }


async def _call_every_verb(objects: list[Obj], eks_node: Obj) -> dict[str, int]:
    (ext,) = _config(objects)["extenders"]
    args = _serve_args(objects)
    settings = _settings(args)
    state = ClusterState.from_snapshot(load_snapshot({"apiVersion": "v1", "kind": "List", "items": [eks_node]}), settings)
    app = create_app(state, settings)
    node = eks_node["metadata"]["name"]
    path = urlsplit(ext["urlPrefix"]).path
    bodies = {
        "filterVerb": {"Pod": _pod(), "Nodes": None, "NodeNames": [node]},
        "prioritizeVerb": {"Pod": _pod(), "Nodes": None, "NodeNames": [node]},
        "preemptVerb": {"Pod": _pod(), "NodeNameToVictims": None, "NodeNameToMetaVictims": {node: {"Pods": [], "NumPDBViolations": 0}}},
        "bindVerb": {"PodName": "p", "PodNamespace": "default", "PodUID": "u1", "Node": node},
    }
    status = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://kbl-extender") as client:
        for field, body in bodies.items():
            if field in ext:
                reply = await client.post(f"{path}/{ext[field]}", json=body)
                status[field] = reply.status_code
                if field == "filterVerb":
                    assert reply.json()["NodeNames"] == [node]
        (container,) = pod_spec(find(objects, "Deployment", "kbl-extender"))["containers"]
        for probe in ("readinessProbe", "livenessProbe"):
            status[probe] = (await client.get(container[probe]["httpGet"]["path"])).status_code
        status["unprefixed-filter"] = (await client.post("/filter", json=bodies["filterVerb"])).status_code
        bind = await client.post(f"{path}/bind", json=bodies["bindVerb"])
        status["bind-error"] = bool(bind.json().get("Error"))
    return status


def test_every_configured_verb_and_probe_is_served_by_the_extender(eks_node: Obj) -> None:
    status = asyncio.run(_call_every_verb(_objects(), eks_node))
    assert status == {"filterVerb": 200, "prioritizeVerb": 200, "preemptVerb": 200, "readinessProbe": 200, "livenessProbe": 200,
                      "unprefixed-filter": 200, "bind-error": True}  # fmt: skip


def test_a_url_prefix_and_delegated_binding_reach_the_same_routes(eks_node: Obj) -> None:
    objects = _objects({"extender": {"urlPrefix": "/kbl"}, "scheduler": {"extender": {"bind": True}}})
    (ext,) = _config(objects)["extenders"]
    assert urlsplit(ext["urlPrefix"]).path == "/kbl"
    assert ext["bindVerb"] == "bind"
    status = asyncio.run(_call_every_verb(objects, eks_node))
    assert status["filterVerb"] == status["prioritizeVerb"] == status["preemptVerb"] == status["bindVerb"] == 200
    assert status["readinessProbe"] == status["livenessProbe"] == 200
    assert status["unprefixed-filter"] == 404, "with a prefix, the bare verb must not be served"
    assert status["bind-error"] is False
    rules = find(objects, "ClusterRole", "kbl-extender")["rules"]
    assert {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]} in rules


def test_extender_answers_bind_only_when_the_scheduler_delegates_binding() -> None:
    assert _serve_args(_objects()).no_bind is True
    assert _serve_args(_objects({"scheduler": {"extender": {"bind": True}}})).no_bind is False


def _percentages(config: Obj) -> dict[str, int]:
    """Each profile's effective percentageOfNodesToScore (its own, else the global one)."""
    return {p["schedulerName"]: p.get("percentageOfNodesToScore", config["percentageOfNodesToScore"]) for p in config["profiles"]}


def test_the_webhook_switches_the_default_profile_to_adaptive_and_the_extender_routes_to_the_exhaustive_one() -> None:
    objects = _objects({"webhook": {"enabled": True}, "tls": {"certManager": {"enabled": True}}})
    config = _config(objects)
    assert _percentages(config) == {"kbl-scheduler": 0, "kbl-scheduler-exhaustive": 100}
    assert len(config["extenders"]) == 1  # global: both profiles call kbl
    settings = _settings(_serve_args(objects))
    assert (settings.scheduler_name, settings.exhaustive_scheduler_name) == ("kbl-scheduler", "kbl-scheduler-exhaustive")
    assert _settings(_serve_args(_objects())).exhaustive_scheduler_name == "", "no webhook, no routing"


def test_profile_names_and_the_default_percentage_are_values() -> None:
    values = {"scheduler": {"name": "data", "exhaustiveName": "data-all", "percentageOfNodesToScore": 30}}
    objects = _objects({**values, "webhook": {"enabled": True, "caBundle": "Y2E="}})
    assert _percentages(_config(objects)) == {"data": 30, "data-all": 100}
    settings = _settings(_serve_args(objects))
    assert (settings.scheduler_name, settings.exhaustive_scheduler_name) == ("data", "data-all")


def test_the_webhook_without_a_ca_refuses_to_render_saying_how_to_fix_it() -> None:
    with pytest.raises(Exception, match=r"tls\.certManager\.enabled=true .* webhook\.caBundle"):  # noqa: B017, PT011
        _objects({"webhook": {"enabled": True}})
