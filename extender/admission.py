"""The mutating admission webhook: a data pod's node affinity names where its data is.

kube-scheduler offers an extender only the nodes its own sampling kept (``percentageOfNodesToScore``:
adaptive, 10% at 5,000 nodes, 5% from 6,000 up), so a node holding a pod's data may never be
offered. As Fluid does, the webhook (``POST /mutate``, AdmissionReview ``admission.k8s.io/v1``)
writes node affinity into a kbl pod when it is created, so that the scheduler's own NodeAffinity
plugin shrinks the candidates before any sampling:

- a *required*-locality pod gets a required term ``matchFields metadata.name In [holders]``: the
  nodes holding a piece of every shard it reads (the extender's filter rule, :mod:`extender.wishes`). NodeAffinity's
  PreFilter turns that into the exact node list, sampled or not. Above :attr:`AdmissionSettings.max_names`
  holders (the list is bounded: every name is in the pod object and in every scheduling cycle) it
  falls back to ``topology.kubernetes.io/zone In [zones of the holders]``.
- a *preferred*-locality pod gets preferred terms (scored, never a constraint): the zone where most
  of its bytes are readable within the zone, and the racks where most are readable within the rack.

Routing to the exhaustive profile. Only a required name term lets PreFilter shrink the candidates;
a preferred term only re-scores the nodes sampling already kept, and a required name term on a
preferred pod would change what it accepts (it could wait forever when the holders are full). So
when :attr:`AdmissionSettings.exhaustive_scheduler_name` is set (the second profile of the same
kube-scheduler, ``percentageOfNodesToScore: 100``), the webhook also sets ``spec.schedulerName`` to
it for a pod whose candidates it could not narrow to the holders: a *preferred* pod whose data is
placed, and a *required* pod that got only the zone fallback. A pod narrowed by name keeps its
profile (PreFilter already gives the exact set), and so do pods with no data wish or unplaced
data (they gain the adaptive profile's speed). Only pods whose ``spec.schedulerName`` is the kbl
scheduler's (:attr:`AdmissionSettings.scheduler_name`) are ever routed, never another
scheduler's; ``spec.schedulerName`` is settable at CREATE, when the webhook runs.

The reply is always ``allowed``: a pod the webhook cannot read, a DataSet not placed yet, or an
error leaves the pod unchanged (the webhook is ``failurePolicy: Ignore`` in the chart too).
A pod annotated ``kbl.io/dataset`` and ``kbl.io/mount: /data`` also gets its DataSet as a
``data.kbl.io`` CSI volume mounted read-only at that path (:mod:`extender.volumes`), as Fluid's
webhook does.

Narrowing (:mod:`extender.narrowing`, ``narrowing`` on and its gate controller alive): a
preferred data pod of the kbl scheduler with a controller owner gets the scheduling gate
``kbl.io/narrow`` *instead of* the routing; the controller then narrows it by name before it
is ungated. Pods without an owner, pods whose owner lost a narrowed pod, and every pod while no
controller is alive are routed as above. With narrowing on, every pod of the kbl profiles that is
*not* gated also gets ``kbl.io/extender: "1"`` in its first container's requests and limits
(:func:`resource_patch`): kube-scheduler's ``managedResources`` sends only those pods to the
extender, so a narrowed pod never calls it. Existing node affinity is kept: the required requirement is ANDed into every existing term,
preferred terms are appended. The patch is RFC 6902 JSONPatch, base64 in the reply.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from extender.bodies import BodyError, read_json
from extender.narrowing import EXTENDER_RESOURCE, gate_patch
from extender.settings import DEFAULT_SCHEDULER_NAME, ExtenderSettings
from extender.state import ClusterState
from extender.volumes import volume_patch
from extender.wishes import local_shards, resolve
from topology import labels
from topology.clusters import Cluster
from topology.errors import KblError
from topology.pods import Pod

log = logging.getLogger(__name__)

ADMISSION_VERSION = "admission.k8s.io/v1"
#: Where the extender serves the webhook (the chart's MutatingWebhookConfiguration calls it).
MUTATE_PATH = "/mutate"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """What the webhook writes.

    ``max_names``: most holder names written into a required term (above: zone affinity).
    ``max_racks``: racks named in preferred terms. ``zone_weight`` / ``rack_weight``: weights
    (1-100) of the preferred terms. ``rack_label``: the node label naming the rack.
    ``scheduler_name``: the kbl scheduler's default profile; only its pods are ever routed.
    ``exhaustive_scheduler_name``: the profile scoring every node (``percentageOfNodesToScore:
    100``) that pods the webhook cannot narrow by name are routed to; ``""``: no routing.
    ``extender_resource``: with narrowing on, the extended resource kube-scheduler's
    ``managedResources`` sends to the extender (:data:`extender.narrowing.EXTENDER_RESOURCE`),
    given to every pod of either profile that the webhook does not gate; ``""``: none.
    """

    max_names: int = 100
    max_racks: int = 3
    zone_weight: int = 50
    rack_weight: int = 50
    rack_label: str = labels.DEFAULT_RACK
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    exhaustive_scheduler_name: str = ""
    extender_resource: str = ""

    @classmethod
    def of(cls, settings: ExtenderSettings) -> AdmissionSettings:
        """The webhook's settings from the extender's (rack label, scheduler and profile names)."""
        return cls(
            rack_label=settings.rack_label,
            scheduler_name=settings.scheduler_name,
            exhaustive_scheduler_name=settings.exhaustive_scheduler_name,
            extender_resource=EXTENDER_RESOURCE if settings.narrowing else "",
        )


@dataclass(frozen=True, slots=True)
class Narrowing:
    """The node affinity the webhook adds: one required requirement and preferred terms.

    ``exhaustive``: the affinity does not narrow the candidates to the holders (preferred terms,
    or the zone fallback), so sampling could still hide them: the pod is worth routing to the
    exhaustive profile.
    """

    required: Mapping[str, Any] | None  # a nodeSelectorTerm fragment: {"matchFields": [...]} or {"matchExpressions": [...]}
    preferred: tuple[Mapping[str, Any], ...]
    reason: str
    exhaustive: bool = False


def _zone_label(labels_of: Mapping[str, str]) -> str | None:
    return labels_of.get(labels.ZONE) or labels_of.get(labels.LEGACY_ZONE)


def narrowing(cluster: Cluster, pod: Pod, settings: AdmissionSettings | None = None) -> Narrowing | None:
    """The affinity for a pod, or ``None`` when it reads nothing through kbl or its data is not placed."""
    settings = settings or AdmissionSettings()
    wish = resolve(cluster, pod)
    if not wish.usable or wish.key is None:
        return None  # reads nothing through kbl, or a problem the extender reports
    key = wish.key
    table = cluster.level_bytes(key, wish.shards)
    _, _, _, present = cluster.domain_arrays()
    live = present[: table.table.shape[0]] == 1
    if wish.required:
        # the extender's rule (extender.wishes): a piece of every requested shard on the node
        pieces = cluster.global_pieces(key)
        if wish.shards is not None:
            pieces = pieces[np.asarray(wish.shards, dtype=np.int64)]
        have = local_shards(pieces, live.shape[0])[: live.shape[0]]
        holders = np.flatnonzero(live & (have >= wish.shard_count))
        if not holders.size:
            return None  # nobody holds it all: the extender's filter says why
        names = sorted(cluster.name_of(i) for i in holders.tolist())
        if len(names) <= settings.max_names:
            term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": names}]}
            return Narrowing(term, (), f"{len(names)} holder nodes by name")
        zones = {_zone_label(cluster.nodes[n].labels) for n in names}
        if None in zones:
            return None  # a holder without a zone label: no zone term can name it
        values = sorted(z for z in zones if z is not None)
        term = {"matchExpressions": [{"key": labels.ZONE, "operator": "In", "values": values}]}
        return Narrowing(term, (), f"{len(names)} holders (over {settings.max_names}): their {len(values)} zones", exhaustive=True)
    return _preferred(cluster, table.table, live, settings)


def _preferred(cluster: Cluster, table: np.ndarray[Any, Any], live: np.ndarray[Any, Any], settings: AdmissionSettings) -> Narrowing | None:
    rack_ids = cluster.domain_arrays()[0]
    within_zone = table[:, :3].sum(axis=1)
    within_rack = table[:, :2].sum(axis=1)
    ids = np.flatnonzero(live)
    if not ids.size or within_zone[ids].max() <= 0:
        return None
    best = int(ids[np.argmax(within_zone[ids])])
    zone = _zone_label(cluster.nodes[cluster.name_of(best)].labels)
    terms: list[Mapping[str, Any]] = []
    if zone is not None:
        terms.append({"weight": settings.zone_weight, "preference": {"matchExpressions": [_in(labels.ZONE, [zone])]}})
    # racks: the best node of each rack, ranked by bytes readable within the rack
    racks_seen: set[int] = set()
    order = ids[np.argsort(-within_rack[ids], kind="stable")]
    for i in order.tolist():
        if len(racks_seen) >= settings.max_racks or within_rack[i] <= 0:
            break
        rack_id = int(rack_ids[i])
        if rack_id in racks_seen:
            continue
        racks_seen.add(rack_id)
        node_labels = cluster.nodes[cluster.name_of(i)].labels
        rack, rack_zone = node_labels.get(settings.rack_label), _zone_label(node_labels)
        if rack is None or rack_zone is None:
            continue
        preference = {"matchExpressions": [_in(labels.ZONE, [rack_zone]), _in(settings.rack_label, [rack])]}
        terms.append({"weight": settings.rack_weight, "preference": preference})
    # placed data: worth the exhaustive profile even when no zone or rack label can name it
    return Narrowing(None, tuple(terms), f"preferred: zone {zone} and {len(terms) - (zone is not None)} racks", exhaustive=True)


def _in(key: str, values: Sequence[str]) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def affinity_patch(pod_obj: Mapping[str, Any], narrow: Narrowing) -> list[dict[str, Any]]:
    """JSONPatch operations adding ``narrow`` to the pod, keeping its own node affinity."""
    spec = pod_obj.get("spec") or {}
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    fresh: dict[str, Any] = {}
    if narrow.required is not None:
        fresh[REQUIRED] = {"nodeSelectorTerms": [dict(narrow.required)]}
    if narrow.preferred:
        fresh[PREFERRED] = [dict(t) for t in narrow.preferred]
    if not fresh:
        return []
    if not isinstance(affinity, Mapping):
        return [{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": fresh}}]
    if not isinstance(node_affinity, Mapping):
        return [{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": fresh}]
    ops: list[dict[str, Any]] = []
    base = "/spec/affinity/nodeAffinity"
    if narrow.required is not None:
        terms = (node_affinity.get(REQUIRED) or {}).get("nodeSelectorTerms")
        if not terms:
            ops.append({"op": "add", "path": f"{base}/{REQUIRED}", "value": fresh[REQUIRED]})
        else:  # terms are ORed: AND the requirement into each of them
            for i, term in enumerate(terms):
                for part, requirements in narrow.required.items():
                    path = f"{base}/{REQUIRED}/nodeSelectorTerms/{i}/{part}"
                    if isinstance(term, Mapping) and term.get(part):
                        ops.extend({"op": "add", "path": f"{path}/-", "value": r} for r in requirements)
                    else:
                        ops.append({"op": "add", "path": path, "value": list(requirements)})
    if narrow.preferred:
        if node_affinity.get(PREFERRED):
            ops.extend({"op": "add", "path": f"{base}/{PREFERRED}/-", "value": t} for t in fresh[PREFERRED])
        else:
            ops.append({"op": "add", "path": f"{base}/{PREFERRED}", "value": fresh[PREFERRED]})
    return ops


def routing_patch(pod: Pod, narrow: Narrowing | None, settings: AdmissionSettings) -> list[dict[str, Any]]:
    """The JSONPatch moving the pod to the exhaustive profile, or ``[]`` (module docstring).

    Routed only when routing is configured, the pod is the kbl scheduler's (never another
    scheduler's), and its affinity does not narrow it to the holders by name.
    """
    target = settings.exhaustive_scheduler_name
    if not target or narrow is None or not narrow.exhaustive or pod.scheduler_name != settings.scheduler_name:
        return []
    return [{"op": "replace", "path": "/spec/schedulerName", "value": target}]


def _escape(name: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")


def requests_resource(obj: Mapping[str, Any], name: str) -> bool:
    """True when a container or init container of the pod requests or limits ``name`` (what
    kube-scheduler's ``HTTPExtender.IsInterested`` asks)."""
    spec = obj.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = (container.get("resources") if isinstance(container, Mapping) else None) or {}
        if name in (resources.get("requests") or {}) or name in (resources.get("limits") or {}):
            return True
    return False


def resource_patch(obj: Mapping[str, Any], settings: AdmissionSettings) -> list[dict[str, Any]]:
    """JSONPatch giving the pod's first container ``settings.extender_resource: 1`` in its
    requests and limits (an extended resource: an integer, requests equal to limits), so that
    kube-scheduler calls the extender for it; ``[]`` when there is no such resource, the pod is
    not of the kbl scheduler's profiles (``scheduler_name`` or ``exhaustive_scheduler_name``, as
    the pod names it after routing), or it already asks for it."""
    name = settings.extender_resource
    spec = obj.get("spec") or {}
    containers = spec.get("containers") or []
    ours = {settings.scheduler_name, settings.exhaustive_scheduler_name} - {""}
    if not name or not containers or spec.get("schedulerName") not in ours or requests_resource(obj, name):
        return []
    base = "/spec/containers/0/resources"
    resources = containers[0].get("resources") if isinstance(containers[0], Mapping) else None
    if not isinstance(resources, Mapping) or not resources:
        return [{"op": "add", "path": base, "value": {"requests": {name: "1"}, "limits": {name: "1"}}}]
    ops: list[dict[str, Any]] = []
    for part in ("requests", "limits"):
        if isinstance(resources.get(part), Mapping) and resources.get(part):
            ops.append({"op": "add", "path": f"{base}/{part}/{_escape(name)}", "value": "1"})
        else:
            ops.append({"op": "add", "path": f"{base}/{part}", "value": {name: "1"}})
    return ops


def gateable(cluster: Cluster, pod: Pod, settings: AdmissionSettings) -> bool:
    """True for a pod the gate controller could narrow (:mod:`extender.narrowing`): a preferred
    data pod of the kbl scheduler whose data has a present holder (the pods the webhook would
    otherwise route). O(requested pieces): no table over every node."""
    if pod.scheduler_name != settings.scheduler_name:
        return False
    wish = resolve(cluster, pod)
    if not wish.usable or wish.key is None or wish.required:
        return False
    return bool(cluster.level_sums(wish.key, wish.shards).holders.size)


def review(
    body: Any, cluster: Cluster, settings: AdmissionSettings | None = None, *, gate: Callable[[Mapping[str, Any]], bool] | None = None
) -> dict[str, Any]:
    """The AdmissionReview reply to a review request: always allowed, with a patch when it helps.

    ``gate`` (narrowing on): asked about each :func:`gateable` pod; when it says yes the pod
    gets the scheduling gate :data:`extender.narrowing.GATE` instead of being routed. Every pod
    of the kbl profiles it does not gate gets :attr:`AdmissionSettings.extender_resource` when
    set (:func:`resource_patch`, even when the affinity could not be computed): a gated pod
    never does, so once narrowed it never calls the extender.
    """
    settings = settings or AdmissionSettings()
    request = body.get("request") if isinstance(body, Mapping) else None
    request = request if isinstance(request, Mapping) else {}
    response: dict[str, Any] = {"uid": str(request.get("uid") or ""), "allowed": True}
    obj = request.get("object")
    if request.get("operation", "CREATE") == "CREATE" and isinstance(obj, Mapping) and not (obj.get("spec") or {}).get("nodeName"):
        gated = False
        try:
            pod = Pod.from_object(obj)
            if gate is not None and gateable(cluster, pod, settings) and gate(obj):
                ops = gate_patch(obj)  # the controller narrows it by name and ranks the names
                gated = True
            else:
                narrow = narrowing(cluster, pod, settings)
                ops = affinity_patch(obj, narrow) if narrow is not None else []
                ops += routing_patch(pod, narrow, settings)
        except Exception:  # never block or fail a pod for the webhook's sake
            log.exception("admission: cannot compute the node affinity; pod admitted unchanged")
            ops = []
        if not gated and settings.extender_resource:
            try:  # after routing: the profile the pod ends up in decides
                routed = next((op["value"] for op in ops if op.get("path") == "/spec/schedulerName"), None)
                target = {**obj, "spec": {**(obj.get("spec") or {}), "schedulerName": routed}} if routed else obj
                ops += resource_patch(target, settings)
            except Exception:
                log.exception("admission: cannot add the extender resource; pod admitted without it")
        try:
            ops += volume_patch(obj)  # the DataSet as a CSI volume (extender/volumes.py), independent of the affinity
        except Exception:
            log.exception("admission: cannot add the DataSet volume; pod admitted without it")
        if ops:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(ops)).decode("ascii")
    return {"apiVersion": ADMISSION_VERSION, "kind": "AdmissionReview", "response": response}


def apply_patch(obj: Mapping[str, Any], ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Apply the JSONPatch the webhook writes to a copy of ``obj``.

    Used by the benchmarks' API-server stand-in and the tests; supports ``add`` to an object key
    or a list (``-`` appends) and ``replace`` of an existing object key, as RFC 6902 defines them.
    """
    out: dict[str, Any] = orjson.loads(orjson.dumps(obj))
    for op in ops:
        if op.get("op") not in ("add", "replace"):
            raise KblError(f"unsupported JSONPatch op {op.get('op')!r}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        target: Any = out
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        last = parts[-1]
        if op["op"] == "replace":
            if isinstance(target, list) or last not in target:
                raise KblError(f"JSONPatch replace: no value at {op['path']!r}")
            target[last] = op["value"]
        elif isinstance(target, list):
            target.append(op["value"]) if last == "-" else target.insert(int(last), op["value"])
        else:
            target[last] = op["value"]
    return out


def endpoint(
    state: ClusterState, settings: ExtenderSettings, gate: Callable[[Mapping[str, Any]], bool] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /mutate`` handler: an AdmissionReview in, the reply out (200 unless unreadable).

    ``gate``: the gate controller's :meth:`~extender.narrowing.GateController.should_gate` when
    narrowing is on.
    """
    admission = AdmissionSettings.of(settings)

    async def mutate(request: Request) -> Response:
        try:
            body = await read_json(request, settings.max_body_bytes)
        except BodyError as exc:
            return Response(orjson.dumps({"Error": str(exc)}), status_code=exc.status, media_type="application/json")
        with state.lock:
            reply = review(body, state.cluster, admission, gate=gate)
        return Response(orjson.dumps(reply), media_type="application/json")

    return mutate
