"""Binding a pod to the node kube-scheduler chose, and remembering it at once.

When kube-scheduler is configured with our ``bindVerb`` it stops binding itself: the extender
must create the ``Binding`` (``pods/binding``) through the API server, exactly as the default
binder does, and then records the assignment in the cache as *in-flight* so the very next pod
sees the node's new load, before the watch reports the pod bound. In snapshot mode (no API)
only the cache is updated.
"""

from __future__ import annotations

import logging

from extender.messages import BindRequest
from extender.state import ClusterState
from kube.api import KubeApi
from topology.errors import KblError

log = logging.getLogger(__name__)


def bind(state: ClusterState, api: KubeApi | None, request: BindRequest) -> str:
    """Bind and record; returns ``""`` on success, else the error for ``ExtenderBindingResult.Error``.

    This call blocks on the API server; run it off the event loop.
    """
    if not state.settings.bind_enabled:
        return "binding is disabled in this extender (bind_enabled: false); remove bindVerb from the scheduler's extender config"
    if api is not None:
        try:
            api.create_binding(request.namespace, request.pod_name, request.uid, request.node)
        except KblError as exc:
            log.warning("binding %s/%s to %s failed: %s", request.namespace, request.pod_name, request.node, exc)
            return f"binding pod {request.namespace}/{request.pod_name} to node {request.node} failed: {exc}"
    state.record_assignment(request.namespace, request.pod_name, request.uid, request.node)
    return ""
