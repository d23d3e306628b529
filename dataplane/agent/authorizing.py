"""Who may read what: a SubjectAccessReview per (identity, DataSet, permission), cached with a TTL.

A reader may read a DataSet's shards only if its identity (from :mod:`.authenticating`) may
``get`` that DataSet (:data:`READ_SHARDS`: group ``kbl.io``, resource ``datasets``, the DataSet's
namespace and name): the same RBAC rule that lets it read the DataSet object lets it read the
data. Agents fetching pieces from each other present their own identity and need ``get`` on the
subresource ``datasets/pieces`` (:data:`READ_PIECES`), granted to the agent's ClusterRole and to
nobody else by the chart: a pod that may read a DataSet's shards may not read raw fragments.

:class:`AccessReviewer` asks the API server (``authorization.k8s.io/v1`` SubjectAccessReview,
RBAC ``subjectaccessreviews: create``) and caches each answer, allowed and denied alike, for
``cache_s`` seconds: a binding removed, or a token that stops authenticating, stops working within
that time. An API error is a denial (never cached), as is a reader the API server has no opinion
about. :class:`AllowAuthenticated` authorizes every authenticated caller: the agent's
``--no-access-review`` mode for tests and development without RBAC, and it says so in its reason.
A refused read is ``403`` with the reason (who, which verb, which DataSet).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from dataplane.agent.authenticating import Identity
from kube.api import DATASETS, SUBJECT_ACCESS_REVIEWS, ApiError, KubeApi

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Permission:
    """A verb on DataSets (or one of their subresources) in the ``kbl.io`` API group."""

    verb: str
    subresource: str = ""

    @property
    def resource(self) -> str:
        return f"{DATASETS.plural}/{self.subresource}" if self.subresource else DATASETS.plural


#: Reading a DataSet's shards (the read API's shard route): ``get datasets``.
READ_SHARDS = Permission("get")
#: Reading a piece (a replica file or one fragment) as a peer agent does: ``get datasets/pieces``.
READ_PIECES = Permission("get", "pieces")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


class Authorizer(Protocol):
    def authorize(self, who: Identity, namespace: str, name: str, permission: Permission) -> Decision:
        """Whether ``who`` may ``permission`` the DataSet ``namespace/name``, and why."""
        ...


def refusal(who: Identity, namespace: str, name: str, permission: Permission, why: str = "") -> str:
    """The API server's wording of a refusal, with the authorizer's reason when it gave one."""
    text = (
        f'User "{who.username}" cannot {permission.verb} resource "{permission.resource}" in API group "{DATASETS.group}" '
        f'in the namespace "{namespace}" (DataSet {name})'
    )
    return f"{text}: {why}" if why else text


class AccessReviewer:
    """SubjectAccessReview through the Kubernetes API, answers cached for ``cache_s`` seconds."""

    def __init__(self, api: KubeApi, *, cache_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.api = api
        self.cache_s = cache_s
        self.max_entries = max_entries
        self.reviews = 0
        self._cache: dict[tuple[Identity, str, str, Permission], tuple[float, Decision]] = {}
        self._lock = threading.Lock()

    def authorize(self, who: Identity, namespace: str, name: str, permission: Permission) -> Decision:
        key = (who, namespace, name, permission)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        decision, cacheable = self._review(who, namespace, name, permission)
        if cacheable:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[key] = (now + self.cache_s, decision)
        return decision

    def _review(self, who: Identity, namespace: str, name: str, permission: Permission) -> tuple[Decision, bool]:
        spec: dict[str, object] = {
            "user": who.username,
            "groups": list(who.groups),
            "resourceAttributes": {
                "group": DATASETS.group,
                "resource": DATASETS.plural,
                "subresource": permission.subresource,
                "verb": permission.verb,
                "namespace": namespace,
                "name": name,
            },
        }
        if who.uid:
            spec["uid"] = who.uid
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {"name": "kbl-agent"}, "spec": spec}
        self.reviews += 1
        try:
            answer = self.api.create(SUBJECT_ACCESS_REVIEWS, body)
        except ApiError as exc:
            log.warning("SubjectAccessReview failed: %s", exc)
            return Decision(False, refusal(who, namespace, name, permission, f"the access review failed ({exc})")), False
        status = answer.get("status") or {}
        why = str(status.get("reason") or status.get("evaluationError") or "")
        if status.get("allowed") and not status.get("denied"):
            return Decision(True, why), True
        return Decision(False, refusal(who, namespace, name, permission, why)), True


class AllowAuthenticated:
    """Every authenticated caller may read everything (``--no-access-review``: tests, development)."""

    def authorize(self, who: Identity, namespace: str, name: str, permission: Permission) -> Decision:
        return Decision(True, "access review switched off: every authenticated caller is allowed")
