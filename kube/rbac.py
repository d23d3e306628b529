"""RBAC as the API server evaluates it, for the APIs that have no API server behind them.

:func:`review` answers a SubjectAccessReview (``authorization.k8s.io/v1``) from the Role,
ClusterRole, RoleBinding and ClusterRoleBinding objects it is given, with the API server's RBAC
rules: a ClusterRoleBinding grants its ClusterRole's rules in every namespace, a RoleBinding
grants its Role's (or ClusterRole's) rules in its own namespace only; a subject matches by
``User`` name, ``Group`` (one of the caller's groups) or ``ServiceAccount``
(``system:serviceaccount:<namespace>:<name>``); a rule matches by API group, resource
(``resource/subresource`` for a subresource), verb and, when it lists any, resource name, with
``*`` as the wildcard. The in-memory API (:mod:`kube.memory`) answers with it and the tests'
HTTP emulator can too.

What it leaves out, on purpose (none of it is something kbl relies on): aggregated ClusterRoles
(``aggregationRule``), ``nonResourceURLs``, the authorizers other than RBAC (Node, Webhook, ABAC),
the bootstrap roles and bindings an API server creates (``cluster-admin`` for ``system:masters``
and the rest: nothing is allowed that the given objects do not grant), ``extra`` user attributes,
and ``selfsubjectaccessreviews``. A denial carries no reason, as RBAC's does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube.api import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, ConflictError, KubeApi

RBAC_GROUP = "rbac.authorization.k8s.io"


def _matches(values: Iterable[str], wanted: str) -> bool:
    return any(v in ("*", wanted) for v in values)


def _resource_matches(resources: Iterable[str], resource: str, subresource: str) -> bool:
    full = f"{resource}/{subresource}" if subresource else resource
    for r in resources:
        if r in ("*", full):
            return True
        if subresource and r in (f"*/{subresource}", f"{resource}/*"):
            return True
    return False


def _rule_allows(rule: Mapping[str, Any], attrs: Mapping[str, Any]) -> bool:
    if "resources" not in rule:  # nonResourceURLs only: not evaluated here
        return False
    if not _matches(rule.get("apiGroups") or [], str(attrs.get("group") or "")):
        return False
    if not _resource_matches(rule.get("resources") or [], str(attrs.get("resource") or ""), str(attrs.get("subresource") or "")):
        return False
    if not _matches(rule.get("verbs") or [], str(attrs.get("verb") or "")):
        return False
    names = rule.get("resourceNames") or []
    return not names or str(attrs.get("name") or "") in names


def _subject_matches(subject: Mapping[str, Any], user: str, groups: Iterable[str]) -> bool:
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in set(groups)
    if kind == "ServiceAccount":
        return user == f"system:serviceaccount:{subject.get('namespace') or ''}:{name}"
    return False


def review(objects: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``status`` of a SubjectAccessReview with ``spec``, from the RBAC ``objects`` given.

    ``{"allowed": True, "reason": ...}`` naming the binding and role that allow, else
    ``{"allowed": False, "reason": ""}``.
    """
    rbac = [o for o in objects if str(o.get("apiVersion") or "").startswith(RBAC_GROUP + "/")]
    attrs = spec.get("resourceAttributes") or {}
    namespace = str(attrs.get("namespace") or "")
    user, groups = str(spec.get("user") or ""), [str(g) for g in spec.get("groups") or []]
    roles = {
        (o["kind"], (o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"]): o
        for o in rbac
        if o.get("kind") in ("Role", "ClusterRole")
    }
    for binding in rbac:
        kind = binding.get("kind")
        meta = binding.get("metadata") or {}
        if kind == "RoleBinding":
            if not namespace or meta.get("namespace") != namespace:
                continue
        elif kind != "ClusterRoleBinding":
            continue
        ref = binding.get("roleRef") or {}
        if kind == "ClusterRoleBinding" and ref.get("kind") != "ClusterRole":
            continue
        role = roles.get((str(ref.get("kind")), namespace if ref.get("kind") == "Role" else "", str(ref.get("name"))))
        if role is None:
            continue
        subject = next((s for s in binding.get("subjects") or [] if _subject_matches(s, user, groups)), None)
        if subject is None:
            continue
        if any(_rule_allows(rule, attrs) for rule in role.get("rules") or []):
            where = f' in namespace "{namespace}"' if kind == "RoleBinding" else ""
            return {
                "allowed": True,
                "reason": f'RBAC: allowed by {kind} "{meta.get("name")}{"/" + namespace if where else ""}" of {ref.get("kind")} '
                f'"{ref.get("name")}" to {subject.get("kind")} "{subject.get("name")}"',
            }
    return {"allowed": False, "reason": ""}


def grant(api: KubeApi, name: str, rules: Sequence[Mapping[str, Any]], subjects: Sequence[Mapping[str, Any]]) -> None:
    """Create a ClusterRole ``name`` with ``rules`` and a ClusterRoleBinding of it to ``subjects``
    (what an installer does; objects already there are left as they are)."""
    role = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": [dict(r) for r in rules]}
    binding = {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [dict(s) for s in subjects],
    }
    with contextlib.suppress(ConflictError):
        api.create(CLUSTER_ROLES, role)
    with contextlib.suppress(ConflictError):
        api.create(CLUSTER_ROLE_BINDINGS, binding)
