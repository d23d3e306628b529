"""The companion controller: observe the cluster and the cloud, plan capacity, carry it out.

:class:`~controller.reconciling.Controller` reads Nodes, Pods, DataSets and KBLs
through :class:`~kube.api.KubeApi` and node groups through a
:class:`~controller.providers.NodeGroupProvider`, plans with :func:`placement.capacity.plan_capacity`
and executes the actions (:mod:`.acting`). All state lives in the cluster and the cloud, so a
killed controller restarted at any point converges.
"""

from controller.reconciling import Controller, ControllerSettings

__all__ = ["Controller", "ControllerSettings"]
