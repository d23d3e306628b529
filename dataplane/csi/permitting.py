"""May this pod read this DataSet? A SubjectAccessReview of the pod's service account, and an Event
on the pod when it may not.

The question is the one RBAC answers for ``kubectl get dataset NAME -n NS --as
system:serviceaccount:NS:SA``: verb ``get``, group ``kbl.io``, resource ``datasets``, the name and
namespace, with the groups every service account token carries. The driver's own identity needs
``subjectaccessreviews: create`` (the chart's ClusterRole for the agent grants it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dataplane.csi.volumes import VolumeAsk
from kube.api import SUBJECT_ACCESS_REVIEWS, ApiError, KubeApi

log = logging.getLogger(__name__)

__all__ = ["SUBJECT_ACCESS_REVIEWS", "Verdict", "refuse", "review"]
#: The Event reason on a pod whose service account may not read the DataSet it mounts.
DENIED_REASON = "DataSetAccessDenied"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str


def service_account_user(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def review(api: KubeApi, namespace: str, service_account: str, dataset: str) -> Verdict:
    """The API server's answer: may ``namespace``'s ``service_account`` ``get`` DataSet ``dataset``?

    An API error is a refusal (never publish on an unanswered question), with the error as reason.
    """
    body: dict[str, Any] = {
        "apiVersion": SUBJECT_ACCESS_REVIEWS.api_version,
        "kind": SUBJECT_ACCESS_REVIEWS.kind,
        "metadata": {"name": f"kbl-csi-{namespace}-{service_account}-{dataset}"[:253]},
        "spec": {
            "user": service_account_user(namespace, service_account),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            "resourceAttributes": {"namespace": namespace, "verb": "get", "group": "kbl.io", "resource": "datasets", "name": dataset},
        },
    }
    try:
        answer = api.create(SUBJECT_ACCESS_REVIEWS, body)
    except ApiError as exc:
        log.warning("SubjectAccessReview for %s/%s failed: %s", namespace, service_account, exc)
        return Verdict(False, f"the access review failed: {exc}")
    status = answer.get("status") or {}
    return Verdict(bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))


def refuse(api: KubeApi, ask: VolumeAsk, verdict: Verdict) -> str:
    """Record the Warning Event on the pod; returns its message (also the gRPC error's)."""
    namespace, pod, service_account, dataset = ask.namespace, ask.pod, ask.service_account, ask.dataset
    message = (
        f"service account {namespace}/{service_account} may not get DataSet {namespace}/{dataset}: "
        f"the data.kbl.io volume is not mounted (grant get on datasets.kbl.io {dataset!r} to "
        f"{service_account_user(namespace, service_account)})" + (f"; {verdict.reason}" if verdict.reason else "")
    )
    involved = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace, "uid": ask.pod_uid}}
    if pod:
        try:
            api.create_event(involved, reason=DENIED_REASON, message=message, type="Warning")
        except ApiError as exc:
            log.warning("event on pod %s/%s failed: %s", namespace, pod, exc)
    return message
