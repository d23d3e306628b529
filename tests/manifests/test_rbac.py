"""RBAC is least privilege: every permission is listed here with the reason it is needed.

A rule the manifests grant that is not in :data:`JUSTIFIED` fails, and so does a justified
permission the manifests no longer grant (the list stays honest both ways). No wildcards, no
Secrets, no cluster-admin, no binding to a role we do not ship except the upstream scheduler roles,
and one delete: the placement reconciler's of its own PlacementSlices.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.reconciling import WATCHED as CONTROLLER_WATCHED
from dataplane.agent.authorizing import READ_PIECES, READ_SHARDS
from extender.serving import WATCHED
from kube import api
from tests.conftest import ROOT
from tests.manifests.shipped import find, generator, of_kind, plain_objects

Obj = dict[str, Any]
#: (role, apiGroup, resource, verb, resourceName or "") -> why the component needs it.
JUSTIFIED: dict[tuple[str, str, str, str, str], str] = {
    # The extender: read-only informers, explanatory events.
    ("ClusterRole/kbl-extender", "", "nodes", "list", ""): "node cache: labels (topology), allocatable",
    ("ClusterRole/kbl-extender", "", "nodes", "watch", ""): "node cache kept current incrementally",
    ("ClusterRole/kbl-extender", "", "pods", "list", ""): "bound pods count against their node's capacity (hotspot avoidance)",
    ("ClusterRole/kbl-extender", "", "pods", "watch", ""): "bound pods kept current incrementally",
    ("ClusterRole/kbl-extender", "kbl.io", "datasets", "list", ""): "where every shard piece lives (status.placement)",
    ("ClusterRole/kbl-extender", "kbl.io", "datasets", "watch", ""): "placements kept current incrementally",
    ("ClusterRole/kbl-extender", "kbl.io", "kbls", "list", ""): "dedicated node groups: keep a KBL's pods in, foreign pods out",
    ("ClusterRole/kbl-extender", "kbl.io", "kbls", "watch", ""): "KBLs kept current incrementally",
    ("ClusterRole/kbl-extender", "kbl.io", "placementslices", "list", ""): (
        "where every piece of a large DataSet lives: its status.placement is then only the index of its PlacementSlices"
    ),
    ("ClusterRole/kbl-extender", "kbl.io", "placementslices", "watch", ""): (
        "a new sliced target is scored once every slice its index names has arrived (the last one meanwhile)"
    ),
    ("ClusterRole/kbl-extender", "", "events", "create", ""): "event on a pod whose best data node was not offered",
    # The controller.
    ("ClusterRole/kbl-controller", "", "pods", "list", ""): "unschedulable pods (PodScheduled=False) per KBL",
    ("ClusterRole/kbl-controller", "", "pods", "watch", ""): "react in under a second to a new unschedulable pod",
    ("ClusterRole/kbl-controller", "", "nodes", "list", ""): "nodes of each KBL's group, their readiness",
    ("ClusterRole/kbl-controller", "", "nodes", "watch", ""): "node-ready times, node losses",
    ("ClusterRole/kbl-controller", "", "nodes", "patch", ""): "cordon, uncordon, annotations for scale-down and prototype images",
    ("ClusterRole/kbl-controller", "", "pods/eviction", "create", ""): "drain through the Eviction API (PDBs enforced by the API server)",
    ("ClusterRole/kbl-controller", "", "events", "create", ""): "explain scale-up, scale-down and refusals",
    ("ClusterRole/kbl-controller", "kbl.io", "kbls", "get", ""): "re-read a KBL before writing its status",
    ("ClusterRole/kbl-controller", "kbl.io", "kbls", "list", ""): "every KBL's node-group wishes and blueprint",
    ("ClusterRole/kbl-controller", "kbl.io", "kbls", "watch", ""): "react to KBL changes",
    ("ClusterRole/kbl-controller", "kbl.io", "kbls/status", "patch", ""): "node-group state and blueprint start in KBL status",
    ("ClusterRole/kbl-controller", "kbl.io", "datasets", "list", ""): "never remove the last piece of a shard",
    ("ClusterRole/kbl-controller", "kbl.io", "datasets", "watch", ""): "placements kept current",
    ("ClusterRole/kbl-controller", "kbl.io", "placementslices", "list", ""): (
        "a large DataSet's target is in its PlacementSlices: the last piece of a shard (controller), the current target (reconciler)"
    ),
    ("ClusterRole/kbl-controller", "kbl.io", "placementslices", "watch", ""): (
        "sliced targets kept current; a DataSet whose index names a slice not yet seen is decided again when it arrives"
    ),
    ("ClusterRole/kbl-controller", "batch", "jobs", "list", ""): "blueprint stages that start by an earlier stage's Job progress",
    ("ClusterRole/kbl-controller", "batch", "jobs", "watch", ""): "Job progress kept current (succeeded / completions)",
    # The placement reconciler in the controller's process (dataplane/reconciler).
    ("ClusterRole/kbl-controller", "kbl.io", "datasets/status", "patch", ""): "the reconciler writes status.placement, transfers, conditions",
    ("ClusterRole/kbl-controller", "kbl.io", "nodeholdings", "list", ""): "which nodes run an agent (wait for data-drained); what every agent holds",
    ("ClusterRole/kbl-controller", "kbl.io", "nodeholdings", "watch", ""): "node agents' reports kept current (release old holders once new ones are ready)",
    ("ClusterRole/kbl-controller", "kbl.io", "placementslices", "create", ""): (
        "a target over --inline-placement-bytes is written as new immutable slices, created before the index that names them"
    ),
    ("ClusterRole/kbl-controller", "kbl.io", "placementslices", "delete", ""): (
        "slices no index names any more (the target moved on, or a writer stopped between two steps): else they pile up"
    ),
    # (With controller.metricsServer: metrics.k8s.io nodes list, for utilization feedback.)
    # The node agent: placements in, its own NodeHoldings out, readers' tokens reviewed.
    ("ClusterRole/kbl-agent", "kbl.io", "datasets", "list", ""): "placements, transfers and sources of every DataSet",
    ("ClusterRole/kbl-agent", "kbl.io", "datasets", "watch", ""): "react to a new placement at once",
    ("ClusterRole/kbl-agent", "kbl.io", "placementslices", "list", ""): (
        "which pieces this node must hold and keep when a large DataSet's target is in PlacementSlices"
    ),
    ("ClusterRole/kbl-agent", "kbl.io", "placementslices", "watch", ""): (
        "act on a new sliced target only once all its slices arrived, never on a mix of two targets"
    ),
    ("ClusterRole/kbl-agent", "kbl.io", "nodeholdings", "get", ""): (
        "does this node's NodeHoldings exist yet; a peer's endpoint and ready pieces, read only when copying from it"
    ),
    ("ClusterRole/kbl-agent", "kbl.io", "nodeholdings", "create", ""): "create this node's NodeHoldings once",
    ("ClusterRole/kbl-agent", "kbl.io", "nodeholdings/status", "patch", ""): "report held, hydrating and corrupt pieces",
    ("ClusterRole/kbl-agent", "", "nodes", "get", ""): "zones of peers (cheapest source first), own uid for the ownerReference",
    ("ClusterRole/kbl-agent", "", "nodes", "patch", ""): "its own Node's kbl.io/reboot-required label (data-aware reboots)",
    ("ClusterRole/kbl-agent", "", "events", "create", ""): "Events on a DataSet: full disk, corrupt piece quarantined, source error",
    ("ClusterRole/kbl-agent", "authentication.k8s.io", "tokenreviews", "create", ""): "authenticate readers and peers (never anonymous)",
    ("ClusterRole/kbl-agent", "authorization.k8s.io", "subjectaccessreviews", "create", ""): "may this reader or peer read that DataSet",
    # What the agent's peers check of it (SubjectAccessReview) when it reads from them.
    ("ClusterRole/kbl-agent", "kbl.io", "datasets", "get", ""): "a reader's shard read relayed to the holder; the CSI driver reads the DataSet a pod mounts",
    ("ClusterRole/kbl-agent", "kbl.io", "datasets/pieces", "get", ""): "copy a piece from a peer (`get datasets/pieces`, agents only)",
    # `kbl controller`'s leader election (kube/leading.py) on its own Lease. RBAC
    # cannot limit `create` by name (the name is in the body): create is for this namespace only.
    ("Role/kbl-controller-leader-election", "coordination.k8s.io", "leases", "create", ""): "create the Lease the first time",
    ("Role/kbl-controller-leader-election", "coordination.k8s.io", "leases", "get", "kbl-controller"): "read the holder",
    ("Role/kbl-controller-leader-election", "coordination.k8s.io", "leases", "update", "kbl-controller"): "renew, take over, release",
    ("Role/kbl-controller-leader-election", "coordination.k8s.io", "leases", "get", "kbl-reconciler"): "the reconciler's own Lease",
    ("Role/kbl-controller-leader-election", "coordination.k8s.io", "leases", "update", "kbl-reconciler"): "renew, take over, release",
    # kbl-scheduler's leader election on its own Lease.
    ("Role/kbl-scheduler-leader-election", "coordination.k8s.io", "leases", "create", ""): "create the Lease the first time",
    ("Role/kbl-scheduler-leader-election", "coordination.k8s.io", "leases", "get", "kbl-scheduler"): "read the leader",
    ("Role/kbl-scheduler-leader-election", "coordination.k8s.io", "leases", "update", "kbl-scheduler"): "renew or take over",
}
#: Roles we bind but do not ship: the upstream ones any kube-scheduler needs.
UPSTREAM_ROLES = {
    ("ClusterRole", "system:kube-scheduler"): "what kube-scheduler reads and writes (pods, nodes, bindings, events, ...)",
    ("ClusterRole", "system:volume-scheduler"): "volume binding during scheduling (PVs, PVCs, StorageClasses)",
    ("Role", "extension-apiserver-authentication-reader"): "delegated authentication of kube-scheduler's secure port",
}
#: The one delete a default install grants: the reconciler's own immutable PlacementSlices.
DELETES = {("ClusterRole/kbl-controller", "kbl.io", "placementslices")}
#: What every reader of DataSets' targets needs besides DataSets: a sliced DataSet's target is only
#: in its PlacementSlices (topology/slices.py). Part of the contract: the exactness tests below add
#: them to what the code scan finds, so the grant holds whether or not a reader's code in this tree
#: lists PlacementSlices yet (once it does, the scan finds the same two calls).
SLICE_READS = {("kbl.io", "placementslices", "list"), ("kbl.io", "placementslices", "watch")}
OBJECTS = plain_objects()


def _granted() -> set[tuple[str, str, str, str, str]]:
    out = set()
    for role in of_kind(OBJECTS, "ClusterRole") + of_kind(OBJECTS, "Role"):
        ref = f"{role['kind']}/{role['metadata']['name']}"
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, ref
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames", [""]):
                            out.add((ref, group, resource, verb, name))
    return out


def test_every_granted_permission_is_justified_and_every_justified_one_granted() -> None:
    granted = _granted()
    assert granted - JUSTIFIED.keys() == set(), "granted without a reason in JUSTIFIED"
    assert JUSTIFIED.keys() - granted == set(), "justified but no longer granted: drop it from JUSTIFIED"


def test_no_wildcards_no_secrets_no_escalation_verbs() -> None:
    for ref, group, resource, verb, name in _granted():
        assert "*" not in (group + resource + verb + name), ref
        assert resource not in {"secrets", "serviceaccounts/token", "clusterroles", "clusterrolebindings", "roles", "rolebindings"}, ref
        assert verb not in {"escalate", "bind", "impersonate", "deletecollection"}, ref
        assert verb != "delete" or (ref, group, resource) in DELETES, f"{ref} may delete {resource}"


def test_every_reader_of_datasets_reads_their_placement_slices_and_only_the_controller_writes_them() -> None:
    """A component that reads DataSets without their PlacementSlices would take a sliced DataSet
    for an unplaced one; the slices are written by the placement reconciler alone (in the
    controller's process), and without it nobody writes them."""
    roles = [o["metadata"]["name"] for o in of_kind(OBJECTS, "ClusterRole")]
    readers = [r for r in roles if ("kbl.io", "datasets", "list") in _granted_to(r)]
    assert sorted(readers) == ["kbl-agent", "kbl-controller", "kbl-extender"]
    for role in readers:
        assert SLICE_READS <= _granted_to(role), role
    slices = {(ref, verb) for ref, _group, resource, verb, _name in _granted() if resource == "placementslices"}
    writes = {(ref, verb) for ref, verb in slices if verb not in {"list", "watch"}}
    assert writes == {("ClusterRole/kbl-controller", "create"), ("ClusterRole/kbl-controller", "delete")}


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_bindings_name_shipped_or_upstream_scheduler_roles_and_shipped_service_accounts(kind: str) -> None:
    shipped_roles = {(o["kind"], o["metadata"]["name"]) for o in of_kind(OBJECTS, "ClusterRole") + of_kind(OBJECTS, "Role")}
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in of_kind(OBJECTS, "ServiceAccount")}
    bindings = of_kind(OBJECTS, kind)
    assert bindings
    for binding in bindings:
        ref = (binding["roleRef"]["kind"], binding["roleRef"]["name"])
        assert ref in shipped_roles or ref in UPSTREAM_ROLES, f"{binding['metadata']['name']} binds {ref}"
        assert ref[1] not in {"cluster-admin", "admin", "edit", "view"}
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert (subject["namespace"], subject["name"]) in accounts


def test_each_component_runs_as_its_own_service_account() -> None:
    for name in ("kbl-extender", "kbl-scheduler", "kbl-controller"):
        deployment = find(OBJECTS, "Deployment", name)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        find(OBJECTS, "ServiceAccount", name)


def test_only_the_scheduler_is_bound_to_the_upstream_scheduler_roles() -> None:
    for binding in of_kind(OBJECTS, "ClusterRoleBinding") + of_kind(OBJECTS, "RoleBinding"):
        if (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in UPSTREAM_ROLES:
            assert [s["name"] for s in binding["subjects"]] == ["kbl-scheduler"]


def test_extender_cannot_bind_pods_unless_the_scheduler_delegates_binding() -> None:
    """Default: kube-scheduler binds; the extender has no pods/binding permission."""
    assert not [g for g in _granted() if g[2] in {"pods/binding", "bindings"} and "extender" in g[0]]


#: KubeApi method -> (resource suffix, verb) it needs; ``None`` resource: fixed below.
VERBS = {
    "list": ("", "list"), "watch": ("", "watch"), "get": ("", "get"), "patch": ("", "patch"), "patch_status": ("/status", "patch"),
    "create": ("", "create"), "replace": ("", "update"), "delete": ("", "delete"),
}
FIXED = {"evict": ("", "pods/eviction", "create"), "create_event": ("", "events", "create"), "create_binding": ("", "pods/binding", "create")}


def _resources(path: Path) -> dict[str, api.Resource]:
    """The Resource constants a module can name: kube.api's and its own module-level ones."""
    module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    names = {name: getattr(api, name) for name in ("NODES", "PODS", "DATASETS", "KBLS", "LEASES", "PLACEMENT_SLICES")}
    names.update({k: v for k, v in vars(module).items() if isinstance(v, api.Resource)})
    return names


def _calls(paths: list[Path], generic: tuple[api.Resource, ...] | None = None) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every KubeApi call in ``paths`` (an AST scan of the source).

    A call whose resource is a variable (a watch loop) counts for every Resource constant the
    module lists in a tuple, or for ``generic`` when given; any other call the scan cannot
    resolve fails the test rather than being left out."""
    out = set()
    for path in paths:
        tree = ast.parse(path.read_text())
        constants = _resources(path)
        listed = {e.id for n in ast.walk(tree) if isinstance(n, ast.Tuple) for e in n.elts if isinstance(e, ast.Name) and e.id in constants}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method, receiver = node.func.attr, ast.unparse(node.func.value)
            if "kube" not in receiver and "api" not in receiver:
                continue
            if method in FIXED:
                out.add(FIXED[method])
            elif method in VERBS and node.args:
                arg = ast.unparse(node.args[0])
                resources = [constants[arg]] if arg in constants else list(generic or ()) or [constants[n] for n in listed]
                assert resources, f"{path.name}: cannot tell which resource {method}({arg}) reads"
                suffix, verb = VERBS[method]
                out |= {(r.group, r.plural + suffix, verb) for r in resources}
    return out


def _granted_to(role: str, objects: list[Obj] | None = None) -> set[tuple[str, str, str]]:
    pool = objects if objects is not None else [o for _, o in OBJECTS]
    roles = [o for o in pool if o["kind"] == "ClusterRole" and o["metadata"]["name"] == role]
    return {(g, r, v) for rule in roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def _lease_grants(role: str, objects: list[Obj]) -> set[tuple[str, str, str, str]]:
    (found,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == role]
    return {
        (g, r, v, n) for rule in found["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        for n in rule.get("resourceNames", [""])
    }  # fmt: skip


def test_controller_is_granted_exactly_the_api_calls_its_code_makes() -> None:
    """Node metrics only when the metrics-server feedback is switched on (``--metrics-server``).
    Its Lease calls (leader election) go to a namespaced Role, by name except ``create``."""
    needed = _calls(sorted((ROOT / "controller").glob("*.py")) + [ROOT / "kube" / "leading.py"]) | _reconciler_calls()
    needed |= _calls([ROOT / "kube" / "watching.py"], generic=tuple(r for r, _ in CONTROLLER_WATCHED))  # its informers
    metrics = ("metrics.k8s.io", "nodes", "list")
    assert metrics in needed
    leases = {c for c in needed if c[0] == api.LEASES.group}
    assert leases == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    assert {("kbl.io", "placementslices", v) for v in ("create", "delete")} <= needed  # the reconciler's slice writes, found
    needed |= SLICE_READS  # the companion controller's own reads of sliced targets (a reader, see SLICE_READS)
    assert _granted_to("kbl-controller") == needed - {metrics} - leases
    objects = [o for _, o in OBJECTS]
    args = find(objects, "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    lease = args[args.index("--leader-elect-lease") + 1]
    reconciler_lease = args[args.index("--reconciler-lease") + 1]
    assert _lease_grants("kbl-controller-leader-election", objects) == {
        (g, r, v, "" if v == "create" else name) for g, r, v in leases for name in (lease, reconciler_lease)
    }
    rendered = generator().render({"controller": {"metricsServer": True}})
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    assert _granted_to("kbl-controller", objects) == needed - leases
    args = find(objects, "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-server" in args


def _reconciler_calls() -> set[tuple[str, str, str]]:
    """The placement reconciler's calls (it runs in the controller's process), its informers'
    list and watch included."""
    from dataplane.reconciler.reconciling import WATCHED as RECONCILER_WATCHED

    paths = sorted((ROOT / "dataplane" / "reconciler").glob("*.py"))
    return _calls(paths) | _calls([ROOT / "kube" / "watching.py"], generic=RECONCILER_WATCHED)


def test_controller_without_the_reconciler_loses_exactly_its_grants() -> None:
    rendered = generator().render({"controller": {"reconciler": {"enabled": False}}})
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    without = _granted_to("kbl-controller", objects)
    assert ("kbl.io", "datasets/status", "patch") not in without  # the reconciler's only write of its own
    assert ("kbl.io", "nodeholdings", "watch") in without  # the controller itself waits for agents' signals
    assert not {("kbl.io", "placementslices", v) for v in ("create", "delete")} & without  # only the reconciler writes slices
    assert SLICE_READS <= without  # the controller reads sliced targets (never remove the last piece of a shard)
    args = find(objects, "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-reconciler" in args


def test_extender_is_granted_exactly_the_api_calls_its_code_makes() -> None:
    paths = sorted((ROOT / "extender").glob("*.py")) + [ROOT / "kube" / "watching.py"]
    needed = _calls(paths, generic=WATCHED)
    binding = ("", "pods/binding", "create")
    assert binding in needed
    # the gate controller's writes (extender/narrowing.py: one patch, and delete of a stuck pod),
    # granted only with webhook.narrowing.enabled
    narrowing = {("", "pods", "patch"), ("", "pods", "delete")}
    assert ("", "pods", "patch") in needed
    needed -= narrowing
    needed |= SLICE_READS  # sliced targets (see SLICE_READS)
    assert _granted_to("kbl-extender") == needed - {binding}
    rendered = generator().render({"scheduler": {"extender": {"bind": True}}})
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    assert _granted_to("kbl-extender", objects) == needed
    rendered = generator().render({"webhook": {"enabled": True, "caBundle": "Y2E=", "narrowing": {"enabled": True}}})
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    assert _granted_to("kbl-extender", objects) == (needed - {binding}) | narrowing
    leases = {c for c in _calls([ROOT / "kube" / "leading.py"]) if c[0] == api.LEASES.group}  # its leader election
    assert _lease_grants("kbl-extender-narrowing", objects) == {(g, r, v, "") for g, r, v in leases}


def test_agent_is_granted_exactly_the_api_calls_its_code_makes() -> None:
    """The informer's list and watch (kube/watching.py) are of DataSets; peers' NodeHoldings are read one
    by one (get). The CSI driver (dataplane/csi, a container of the same pod) shares the agent's
    ServiceAccount: its calls are counted too."""
    paths = [*sorted((ROOT / "dataplane" / "agent").glob("*.py")), *sorted((ROOT / "dataplane" / "csi").glob("*.py"))]
    paths.append(ROOT / "kube" / "watching.py")
    needed = _calls(paths, generic=(api.DATASETS,))
    assert ("authentication.k8s.io", "tokenreviews", "create") in needed
    assert ("authorization.k8s.io", "subjectaccessreviews", "create") in needed
    # Not API calls: what the read routes of its peers demand of its identity (authorizing.py).
    checked_by_peers = {(api.DATASETS.group, p.resource, p.verb) for p in (READ_SHARDS, READ_PIECES)}
    assert _granted_to("kbl-agent") == needed | checked_by_peers | SLICE_READS  # sliced targets (see SLICE_READS)


def test_only_the_agent_may_read_raw_pieces() -> None:
    """``datasets/pieces`` is the peers' route: no other shipped role grants it, so a pod allowed
    to read a DataSet's shards cannot read its fragments (or replicas) piece by piece."""
    holders = {ref for ref, _group, resource, _verb, _name in _granted() if resource == READ_PIECES.resource}
    assert holders == {"ClusterRole/kbl-agent"}
